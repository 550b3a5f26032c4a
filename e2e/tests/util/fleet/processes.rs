//! Processes of the fleet seen from outside, and copies of them: a running
//! process's command line and environment (from `/proc`), and spawning a
//! program with a changed command line, for tests that need one more server
//! set up exactly like the fleet's.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A process spawned for a test, killed when dropped.
pub struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The command line of the fleet's running process `pid` (its program first).
pub fn cmdline(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).expect("the process's command line");
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// `args` with flag `flag` (and its value) removed, then set to `value` if given.
pub fn with_flag(mut args: Vec<String>, flag: &str, value: Option<&str>) -> Vec<String> {
    if let Some(at) = args.iter().position(|a| a == flag) {
        args.drain(at..(at + 2).min(args.len()));
    }
    if let Some(value) = value {
        args.extend([flag.to_owned(), value.to_owned()]);
    }
    args
}

/// The environment of the fleet's running process `pid` (its throttles, say).
pub fn environ(pid: u32) -> Vec<(String, String)> {
    let raw = fs::read(format!("/proc/{pid}/environ")).expect("the process's environment");
    raw.split(|&b| b == 0)
        .filter_map(|kv| {
            String::from_utf8_lossy(kv).split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Starts `args` (program first) with environment `env`, its stderr to `log`,
/// and waits for its `listening on` line.
pub fn spawn(args: &[String], env: Vec<(String, String)>, log: &Path) -> (Spawned, SocketAddr) {
    let stderr = fs::File::create(log).expect("log file");
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
    let addr = line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok());
    let child = Spawned(child);
    let addr = addr.unwrap_or_else(|| panic!("{} did not start: {line:?}", args[0]));
    (child, addr)
}
