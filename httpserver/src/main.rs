//! `httpserver`: reads its settings and serves until SIGTERM. See `--help`.

use std::process::ExitCode;

use httpserver::config::{Config, ConfigError, USAGE};

fn main() -> ExitCode {
    let config = match Config::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(ConfigError::HelpRequested) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("httpserver: {e}");
            return ExitCode::from(2);
        }
    };
    raise_open_file_limit(config.max_connections);
    match httpserver::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("httpserver: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard limit. Each connection holds
/// a descriptor, and the soft limit many shells and service managers start a
/// process with (1024) would make `accept` fail (EMFILE) far below
/// `--max-connections`; the hard limit is the most this process may ask for.
/// Warns when even that is too low for the configured cap.
fn raise_open_file_limit(max_connections: usize) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            eprintln!("httpserver: cannot raise the open-file limit: {}", std::io::Error::last_os_error());
        }
    }
    // The listener, the RPC pool, the signal pipe, static files being sent.
    let spare = 256;
    if limit.rlim_cur < (max_connections + spare) as libc::rlim_t {
        eprintln!(
            "httpserver: the open-file limit ({}) is below --max-connections ({max_connections}) plus {spare} \
             spare; connections past it will be refused",
            limit.rlim_cur
        );
    }
}
