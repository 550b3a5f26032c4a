//! The log-in history: every attempt on an existing account, durable in MariaDB.
//!
//! Recording must cost a log-in nothing it can feel, yet an acknowledged
//! log-in must survive a crash of tcpserver. So an attempt's [`record`] goes
//! onto a Redis list in the pipeline that already ends the worker's batch,
//! beside the script that opens its session (its outcome is settled by
//! then): no extra round trip, and once the reply is sent the record is in
//! Redis. There are several lists (`hist:{q<n>}`, [`crate::keys`]), one per
//! share of the hash slots, so that on a cluster no one node takes every
//! log-in's write; a worker's batch goes to one of them, the batches taking
//! them in turn. The [`drain`]
//! thread, woken by the workers that queued them ([`wake`]), reads every
//! list in one round trip, moves the records into the `logins` table in multi-row statements and
//! takes them off the list only after the COMMIT; a kill between the two
//! inserts them again, which the unique attempt id turns into nothing. The
//! drainer also decides what needs the account's past: whether a success came
//! from a new device, and whether it is suspicious.

pub mod drain;
pub mod known_cache;
pub mod record;
pub mod wake;
