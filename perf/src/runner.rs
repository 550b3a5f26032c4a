//! One run from settings to report: log in the session users if the scenario
//! needs them (not measured), then play the scenario on the event loops.

use std::{
    fs::OpenOptions,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    config::{Config, FIXED_USERS, Scenario},
    engine::{Budget, Engine, Stats},
    error::Error,
    report::Report,
    workload::{Session, Users, Workload},
};

/// Runs the scenario of `config` and reports what it measured.
///
/// # Errors
///
/// [`Error::Setup`] if the session users could not all log in; [`Error::Io`]
/// if an event loop could not run.
pub fn run(config: &Config) -> Result<Report, Error> {
    let workload = match config.scenario {
        Scenario::LoginFixed => login(config, Users::Fixed(FIXED_USERS), false),
        Scenario::LoginRandom => login(config, Users::Random(config.accounts), false),
        Scenario::Profile => Workload::profile(&log_in_sessions(config)?, &config.host),
        Scenario::Nickname => {
            Workload::Nickname { sessions: Arc::new(log_in_sessions(config)?), host: config.host.clone() }
        }
        // Its own runner (`crate::qr::run`), with its own report.
        Scenario::Qr => return Err(Error::Config(crate::config::ConfigError::UnknownScenario("qr".into()))),
    };
    let budget = match config.duration {
        Some(duration) => Budget::duration(duration),
        None => Budget::requests(config.requests),
    };
    let started = Instant::now();
    let (stats, _) = drive(config, config.concurrency, config.threads, workload, &budget)?;
    Ok(Report { scenario: config.scenario, concurrency: config.concurrency, wall: started.elapsed(), stats })
}

/// A log-in workload for `users`, keeping the sessions when `keep`.
pub fn login(config: &Config, users: Users, keep: bool) -> Workload {
    Workload::Login {
        users,
        naming: config.naming.clone(),
        host: config.host.clone(),
        sessions: keep.then(Vec::new),
    }
}

/// Logs in accounts `1..=config.sessions`, one session each.
fn log_in_sessions(config: &Config) -> Result<Vec<Session>, Error> {
    let wanted = config.sessions;
    let accounts: Vec<u64> = (1..=wanted as u64).collect();
    let workload = login(config, Users::List(Arc::new(accounts)), true);
    let budget = Budget::requests(wanted as u64);
    let connections = wanted.min(config.concurrency);
    let (stats, workloads) = drive(config, connections, 1, workload, &budget)?;
    let mut sessions: Vec<Session> = workloads.into_iter().flat_map(Workload::into_sessions).collect();
    if sessions.len() != wanted {
        return Err(Error::Setup { wanted, got: sessions.len(), failures: stats.failures });
    }
    // Connection c uses session c: sort by account so that is account c + 1.
    sessions.sort_by(|a, b| a.username.cmp(&b.username));
    if let Some(path) = &config.save_tokens {
        save_tokens(path, &sessions).map_err(|source| Error::SaveTokens { path: path.clone(), source })?;
    }
    Ok(sessions)
}

/// Writes one token per line, readable by the owner only: they are live
/// credentials until they expire.
fn save_tokens(path: &Path, sessions: &[Session]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    let mut text = String::with_capacity(sessions.len() * 64);
    for session in sessions {
        text.push_str(&session.token);
        text.push('\n');
    }
    file.write_all(text.as_bytes())
}

/// Plays `workload` over `connections` connections split across `threads`
/// event loops, until `budget` is spent.
/// Plays `workload` over `connections` on `threads` event loops until `budget` is spent.
///
/// # Errors
///
/// [`Error::Io`] if an event loop could not run.
pub fn drive(
    config: &Config,
    connections: usize,
    threads: usize,
    workload: Workload,
    budget: &Budget,
) -> Result<(Stats, Vec<Workload>), Error> {
    let threads = threads.clamp(1, connections.max(1));
    let per_thread = connections.div_ceil(threads);
    let timeout: Duration = config.timeout;
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let range = t * per_thread..((t + 1) * per_thread).min(connections);
                let workload = workload.clone();
                scope.spawn(move || Engine::new(config.addr, range, workload, budget, timeout)?.run())
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    let mut stats = Stats::default();
    let mut workloads = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(Ok((s, w))) => {
                stats.merge(&s);
                workloads.push(w);
            }
            Ok(Err(e)) => return Err(Error::Io(e)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    Ok((stats, workloads))
}
