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
    hostsupport::log::set_format(config.log_format);
    hostsupport::log::set_access_lines(config.access_log);
    raise_open_file_limit(config.max_connections);
    size_futex_hash(config.max_connections);
    match httpserver::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            httpserver::log!("httpserver: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Descriptors needed besides the connections: the listener, the RPC
/// connections, the signal pipe, static files being sent.
const SPARE_DESCRIPTORS: usize = 256;

/// Threads besides the connections': the acceptor, the RPC connections'
/// readers, the balancer's probes and the hang-up watcher, with room to spare.
const SPARE_THREADS: usize = 1024;

/// Gives the kernel's futex hash about a bucket per thread the server may run
/// (see [`hostsupport::futex_hash`]: with its default 16 buckets, thousands of
/// waiting connection threads make every wake-up slow).
fn size_futex_hash(max_connections: usize) {
    if let Err(e) = hostsupport::futex_hash::size_for(max_connections.saturating_add(SPARE_THREADS)) {
        httpserver::log!(
            "httpserver: cannot size the futex hash, wake-ups slow down with many connections: {e}"
        );
    }
}

/// Raises the soft open-file limit to the hard one (see
/// [`hostsupport::open_files`]) and logs what needs saying.
fn raise_open_file_limit(max_connections: usize) {
    for warning in hostsupport::open_files::raise_soft_limit(max_connections, SPARE_DESCRIPTORS) {
        httpserver::log!("httpserver: {warning}");
    }
}
