//! One seeding run, from what the database already holds to the final count.
//!
//! The accounts still missing are made in batches: hash a batch on all cores,
//! then load it in one transaction. The two phases alternate rather than
//! overlap. On two cores both are CPU-bound, so overlapping would gain little
//! and would blur the two timings the tool reports. A run that is stopped
//! loses at most the batch in flight; the next run starts after the last
//! committed one (see `database`).

use std::{
    fmt, fs,
    sync::Arc,
    time::{Duration, Instant},
};

use tcpserver::password::PasswordHasher;

use crate::{
    accounts::{self, PASSWORD_PREFIX, USERNAME_PREFIX},
    config::Config,
    database::Database,
    error::Error,
    hashing::hash_batch,
    progress::Progress,
};

/// Accounts per batch (and per transaction): large enough that the statements'
/// fixed costs vanish, small enough that an interrupted run loses under half a
/// minute of hashing and a batch of hashes takes under 100 MB.
pub const BATCH_ACCOUNTS: u64 = 500_000;

/// What a run did and how long each part took.
#[derive(Debug)]
pub struct Summary {
    /// Seeded accounts wanted.
    pub wanted: u64,
    /// Seeded accounts that were there before the run.
    pub before: u64,
    /// Accounts this run added.
    pub added: u64,
    /// PBKDF2 iterations of the new hashes.
    pub hash_cost: u32,
    /// PBKDF2 iterations of the last account that was already there, if any.
    pub existing_cost: Option<u32>,
    /// Threads that hashed.
    pub threads: usize,
    /// Time spent hashing, over all batches.
    pub hashing: Duration,
    /// Time spent in the load transactions, over all batches.
    pub loading: Duration,
    /// Time of the final count.
    pub counting: Duration,
    /// Seeded rows found in `users` and `credentials` at the end.
    pub counts: (u64, u64),
    /// The whole run.
    pub total: Duration,
}

/// Brings the database to `config.accounts` seeded accounts.
///
/// # Errors
///
/// Any [`Error`]; a batch that failed is rolled back, the ones before it stay.
pub fn run(config: &Config) -> Result<Summary, Error> {
    let started = Instant::now();
    let pepper = fs::read(&config.pepper_file)
        .map_err(|source| Error::Pepper { path: config.pepper_file.clone(), source })?;
    let hasher = PasswordHasher::new(pepper, config.hash_cost)?;
    let mut db = Database::connect(&config.mysql_url)?;
    let before = db.seeded_up_to()?;
    let existing_cost = if before > 0 { check_pepper(&mut db, &hasher, before)? } else { None };

    let wanted = config.accounts;
    let (mut hashing, mut loading) = (Duration::ZERO, Duration::ZERO);
    if before < wanted {
        db.check_free(before + 1, wanted)?;
        db.reserve_seed_ids()?;
        let progress = Progress::new(wanted - before);
        let batches = (wanted - before).div_ceil(BATCH_ACCOUNTS);
        for (n, first) in (before + 1..=wanted).step_by(BATCH_ACCOUNTS as usize).enumerate() {
            let end = (first + BATCH_ACCOUNTS).min(wanted + 1);
            progress.phase(format!("hashing batch {}/{batches}", n + 1));
            let clock = Instant::now();
            let hashes = hash_batch(&hasher, first..end, config.threads, &progress);
            let hashed = clock.elapsed();
            progress.phase(format!("loading batch {}/{batches}", n + 1));
            let clock = Instant::now();
            db.load_batch(first, Arc::new(hashes))?;
            let loaded = clock.elapsed();
            hashing += hashed;
            loading += loaded;
            progress.line(&format!(
                "seed: accounts {first}..={}: hashed in {:.1} s, loaded in {:.1} s",
                end - 1,
                hashed.as_secs_f64(),
                loaded.as_secs_f64()
            ));
        }
        progress.finish();
    }

    let expected = wanted.max(before);
    let clock = Instant::now();
    let counts = db.count_seeded(expected)?;
    let counting = clock.elapsed();
    for (table, found) in [("users", counts.0), ("credentials", counts.1)] {
        if found != expected {
            return Err(Error::CountMismatch { table, expected, found });
        }
    }
    Ok(Summary {
        wanted,
        before,
        added: wanted.saturating_sub(before),
        hash_cost: config.hash_cost,
        existing_cost,
        threads: config.threads,
        hashing,
        loading,
        counting,
        counts,
        total: started.elapsed(),
    })
}

/// Verifies the password of one seeded account against its stored hash, so a
/// changed pepper is caught before more accounts are made that no one could
/// use (the load generator would see nothing but failed logins). Returns the
/// cost that account was hashed with.
fn check_pepper(db: &mut Database, hasher: &PasswordHasher, id: u64) -> Result<Option<u32>, Error> {
    let Some(stored) = db.password_hash(id)? else {
        return Ok(None);
    };
    if !hasher.verify(&accounts::password(id), &stored)? {
        return Err(Error::PepperMismatch { id });
    }
    // `$pbkdf2-sha256$i=<cost>$...`, already validated by `verify`.
    Ok(stored.split('$').nth(2).and_then(|c| c.strip_prefix("i=")).and_then(|c| c.parse().ok()))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        let last = self.wanted.max(self.before);
        writeln!(
            f,
            "seed: {last} seeded accounts ({USERNAME_PREFIX}00000001..{USERNAME_PREFIX}{last:08}, \
             password {PASSWORD_PREFIX}<same 8 digits>)"
        )?;
        writeln!(f, "  already there: {}, added: {}", self.before, self.added)?;
        if self.added > 0 {
            writeln!(
                f,
                "  hash cost: {} PBKDF2-HMAC-SHA256 iterations, {} threads",
                self.hash_cost, self.threads
            )?;
            writeln!(
                f,
                "  hash phase: {:.1} s ({:.0} accounts/s)",
                self.hashing.as_secs_f64(),
                rate(self.added, self.hashing)
            )?;
            writeln!(
                f,
                "  load phase: {:.1} s ({:.0} accounts/s into users and credentials)",
                self.loading.as_secs_f64(),
                rate(self.added, self.loading)
            )?;
        } else {
            writeln!(f, "  nothing to do")?;
            if let Some(cost) = self.existing_cost {
                writeln!(f, "  hash cost of the seeded accounts: {cost} PBKDF2-HMAC-SHA256 iterations")?;
            }
        }
        writeln!(
            f,
            "  count check: users {}, credentials {} ({:.1} s)",
            self.counts.0,
            self.counts.1,
            self.counting.as_secs_f64()
        )?;
        write!(f, "  total: {:.1} s", self.total.as_secs_f64())
    }
}
