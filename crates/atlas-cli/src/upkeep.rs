//! What this process holds in repositories: kept alive while it runs, released however it
//! ends.
//!
//! Every repository a command opens is tracked here. A heartbeat task renews the leases
//! and prune locks they hold (`Repository::renew_leases`) a quarter of a lease lifetime
//! after each was last written, so a lease outlives its holder by at most one lifetime.
//! When the command ends — normally, with an error, or stopped by a signal (its future
//! dropped with sessions still open) — [`release_all`] releases whatever is still held,
//! so no exit path but a kill leaves a lease behind (and a killed process's leases are
//! taken over at once on this machine, see `processes`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use atlas_core::ports::SystemClock;
use atlas_core::repo::Repository;

use crate::processes::LocalProcesses;

static TRACKED: Mutex<Vec<Repository>> = Mutex::new(Vec::new());

/// How often the heartbeat looks; a lease is only written when it is due.
const TICK: Duration = Duration::from_secs(2);

/// How long the exit path may spend releasing (a store that stopped answering must not
/// keep the process from exiting; its leases then expire).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(15);

/// Track a repository this process opened: its leases record this process, are renewed
/// by the heartbeat and released on exit.
pub fn track(repo: &Repository) {
    let mut tracked = TRACKED.lock().unwrap_or_else(PoisonError::into_inner);
    if tracked.iter().any(|r| r.same_handle(repo)) {
        return;
    }
    repo.set_process_probe(Arc::new(LocalProcesses));
    tracked.push(repo.clone());
}

fn tracked() -> Vec<Repository> {
    TRACKED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Start the heartbeat (once, inside the runtime, before the command runs).
pub fn start_heartbeat() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for repo in tracked() {
                if let Err(e) = repo.renew_leases(&SystemClock).await {
                    tracing::warn!("renewing a lease: {e}");
                }
            }
        }
    });
}

/// Release everything the process still holds (the exit path).
pub async fn release_all() {
    let work = async {
        for repo in tracked() {
            match repo.release_leases().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!("released {n} lease(s) on exit"),
                Err(e) => tracing::warn!("releasing leases on exit: {e}"),
            }
        }
    };
    if tokio::time::timeout(RELEASE_TIMEOUT, work).await.is_err() {
        tracing::warn!(
            "the store did not answer while releasing leases; they expire by themselves"
        );
    }
}
