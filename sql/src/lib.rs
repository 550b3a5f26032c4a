//! The seeding tool of usermgmt: creates the seeded test accounts in MariaDB
//! (ten million by default), reproducibly and idempotently.
//!
//! Account `i` is `user{i:08}` with password `pass{i:08}` (see [`accounts`]).
//! Passwords are hashed exactly as tcpserver hashes them, with its
//! `PasswordHasher`, its pepper and its cost, so seeded and signed-up accounts
//! are indistinguishable to a login. The rows reach MariaDB through
//! `LOAD DATA LOCAL INFILE` fed from memory, a batch per transaction.
//!
//! A library beside the binary so that the integration tests can name the
//! same accounts the tool creates.

pub mod accounts;
pub mod config;
pub mod error;
pub mod seeder;

mod database;
mod hashing;
mod infile;
mod progress;
mod rows;
