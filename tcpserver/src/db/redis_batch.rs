//! A batch of Redis commands sent in one round trip, to a single Redis or to
//! a cluster, and the Lua scripts they may run.
//!
//! A [`Batch`] is what a worker sends at each step of its requests: on a
//! single Redis one pipeline, on a cluster one pipeline per node, all sent
//! before any reply is read (so still one round trip). The services build it
//! without knowing which ([`super::redis::RedisLink::run`] sends it).
//!
//! A command that Redis refused *without running it* is sent again after
//! the cause is mended: `NOSCRIPT` (a node restarted, or a replica just
//! promoted, has an empty script cache) loads the script first; on a
//! cluster `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`,
//! `READONLY` and `LOADING` mean the slot map is stale or the slot is
//! changing hands. On a single Redis that command alone is sent again; on a
//! cluster the whole batch (see [`super::redis`], where sending a batch twice
//! is argued safe for every operation).

use redis::{Cmd, ServerErrorKind, ToRedisArgs, Value};

/// A Lua script, sent by its SHA-1 (`EVALSHA`) and loaded where a node lacks it.
///
/// Why scripts and not Redis 7 functions (`FUNCTION LOAD`, `FCALL`):
/// functions are replicated, but only within a shard: every master (and a
/// master added later) still needs them loaded, so "load where missing" is
/// needed either way, and one library name shared by every build would make
/// two versions of tcpserver running side by side (a rolling restart) replace
/// each other's code. A script is named by its own hash, so versions coexist,
/// and a missing one costs one extra round trip on the node that lacks it,
/// once per worker.
#[derive(Debug)]
pub struct LuaScript {
    code: &'static str,
    hash: String,
}

impl LuaScript {
    /// The script with this source.
    pub fn new(code: &'static str) -> LuaScript {
        LuaScript { code, hash: redis::Script::new(code).get_hash().to_owned() }
    }

    /// Its SHA-1, as `EVALSHA` names it.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Its source, as `SCRIPT LOAD` takes it.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The `SCRIPT LOAD` command for it.
    pub fn load_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.code);
        cmd
    }
}

/// Commands to send in one round trip, each remembered with whether its
/// reply is wanted and which script it runs.
#[derive(Debug, Default)]
pub struct Batch {
    commands: Vec<Command>,
}

/// One command of a batch.
#[derive(Debug)]
pub(super) struct Command {
    pub(super) cmd: Cmd,
    pub(super) ignored: bool,
    pub(super) script: Option<&'static LuaScript>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Starts a command; [`Batch::arg`] adds its arguments.
    pub fn cmd(&mut self, name: &str) -> &mut Batch {
        self.add_command(redis::cmd(name))
    }

    /// Adds a whole command.
    pub fn add_command(&mut self, cmd: Cmd) -> &mut Batch {
        self.commands.push(Command { cmd, ignored: false, script: None });
        self
    }

    /// Starts an `EVALSHA` of `script`; the key count, keys and arguments follow.
    pub fn script(&mut self, script: &'static LuaScript) -> &mut Batch {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.hash());
        self.commands.push(Command { cmd, ignored: false, script: Some(script) });
        self
    }

    /// Adds an argument to the last command.
    ///
    /// # Panics
    ///
    /// On an empty batch (a programming error: no command was started).
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Batch {
        if let Some(last) = self.commands.last_mut() {
            last.cmd.arg(arg);
        } else {
            panic!("Batch::arg before any command");
        }
        self
    }

    /// Leaves the last command's reply out of what the batch returns (an
    /// error reply still fails the batch).
    pub fn ignore(&mut self) -> &mut Batch {
        if let Some(last) = self.commands.last_mut() {
            last.ignored = true;
        }
        self
    }

    /// Whether the batch holds no command.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// How many commands it holds.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub(super) fn commands(&self) -> &[Command] {
        &self.commands
    }
}

/// Whether a refusal means the command did not run and may simply be sent
/// again once the cause is mended (on a cluster: by the client's redirection
/// and retries).
pub(super) fn is_redoable(kind: Option<ServerErrorKind>, cluster: bool) -> bool {
    match kind {
        Some(ServerErrorKind::NoScript) => true,
        Some(
            ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::BusyLoading,
        ) => cluster,
        _ => false,
    }
}

/// The batch's result from each command's outcome, in order: the first error
/// fails it; the ignored commands' replies are left out.
pub(super) fn compose<T: redis::FromRedisValue>(
    batch: &Batch,
    outcomes: Vec<redis::RedisResult<Value>>,
) -> redis::RedisResult<T> {
    let mut kept = Vec::with_capacity(outcomes.len());
    for (command, outcome) in batch.commands.iter().zip(outcomes) {
        let value = outcome?;
        if let Value::ServerError(e) = value {
            return Err(e.into());
        }
        if !command.ignored {
            kept.push(value);
        }
    }
    Ok(redis::from_redis_value(Value::Array(kept))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_replies_are_left_out_and_any_error_fails_the_batch() {
        let mut batch = Batch::new();
        batch.cmd("SET").arg("a").arg(1).ignore().cmd("GET").arg("a");
        let ok: (i64,) = compose(&batch, vec![Ok(Value::Okay), Ok(Value::Int(1))]).unwrap();
        assert_eq!(ok, (1,));
        let failed: redis::RedisResult<(i64,)> = compose(
            &batch,
            vec![Err(redis::RedisError::from(std::io::Error::other("x"))), Ok(Value::Int(1))],
        );
        assert!(failed.is_err());
    }

    #[test]
    fn only_refusals_of_commands_that_did_not_run_are_redone() {
        assert!(is_redoable(Some(ServerErrorKind::NoScript), false));
        assert!(!is_redoable(Some(ServerErrorKind::Moved), false));
        assert!(is_redoable(Some(ServerErrorKind::Moved), true));
        assert!(!is_redoable(Some(ServerErrorKind::ResponseError), true));
        assert!(!is_redoable(None, true));
    }

    #[test]
    fn a_script_is_named_by_its_sha1() {
        let script = LuaScript::new("return 1");
        assert_eq!(script.hash(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
