//! The log-in history: every attempt on an existing account, durable in MariaDB.
//!
//! Recording must cost a log-in nothing it can feel, yet an acknowledged
//! log-in must survive a crash of tcpserver. So an attempt's [`record`] goes
//! onto a Redis list (`hist:queue`) in the pipeline that already ends the
//! worker's batch (a success's inside the very script that opens its session,
//! which also decides whether it was a success or throttled): no extra round
//! trip, and once the reply is sent the record is in Redis. The [`drain`]
//! thread, woken by the workers that queued them ([`wake`]), moves records into the `logins` table in multi-row statements and
//! takes them off the list only after the COMMIT; a kill between the two
//! inserts them again, which the unique attempt id turns into nothing. The
//! drainer also decides what needs the account's past: whether a success came
//! from a new device, and whether it is suspicious.

pub mod drain;
pub mod record;
pub mod wake;
