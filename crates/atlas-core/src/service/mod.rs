//! Services: the use cases (backup, status, restore, …), each combining the repository
//! with the ports. Options in, a plan (a plain value) in the middle where there is a
//! decision to show, a summary out; no printing, no environment.
//!
//! This module also holds the plumbing the services share: cancellation ([`Cancel`]) and
//! bounded concurrency (`Window`, crate-private: a sliding window of downloads or
//! uploads, used by backup and restore alike).

pub mod backup;
pub mod catalog;
pub mod export;
pub mod migrate;
pub mod protection;
pub mod read;
pub mod repair;
pub mod replicate;
pub mod restore;
pub mod retention;
pub mod shard;
pub mod status;
pub mod verify;

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::task::JoinSet;
use tracing::Instrument as _;

pub use backup::{
    BackupOptions, BackupPlan, BackupReport, BackupRequest, BackupSummary, FolderReport,
    MailboxOutcome, MailboxSelection, backup_mailbox, backup_mailboxes,
};
pub use status::{FolderState, FolderStatus, PendingChanges, StatusReport, mailbox_status};

/// Two-level cancellation shared between a signal handler and running services (backup,
/// restore, …).
///
/// The first request asks runs to finish what is in flight and commit what is safe (a
/// backup commits a partial snapshot); the second asks them to stop at once.
#[derive(Debug, Default)]
pub struct Cancel(AtomicU8);

impl Cancel {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Escalate: none → soft → hard.
    pub fn escalate(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some((v + 1).min(2)));
    }

    /// Whether a soft (or hard) cancel was requested.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= 1
    }

    /// Whether a hard cancel was requested.
    pub fn is_hard(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= 2
    }
}

/// Bounded concurrency as a sliding window: at most `width` tasks run at once, and a new
/// one may start as soon as *any* running one finishes.
///
/// Backup downloads and restore writes both use it. Batches of `width` that wait for
/// their slowest member (how backup used to download) leave slots idle behind one large
/// message; a window keeps every slot busy, which is what Graph's per-mailbox limit of
/// four concurrent requests allows. Results come back in completion order.
#[derive(Debug)]
pub(crate) struct Window<T> {
    tasks: JoinSet<T>,
    width: usize,
}

impl<T: Send + 'static> Window<T> {
    /// A window of `width` slots (at least one).
    pub(crate) fn new(width: usize) -> Self {
        Self {
            tasks: JoinSet::new(),
            width: width.max(1),
        }
    }

    /// Whether another task may start now.
    pub(crate) fn has_room(&self) -> bool {
        self.tasks.len() < self.width
    }

    /// Start a task. Callers check [`Window::has_room`] first (or call
    /// [`Window::next`] until there is room); the window does not queue.
    pub(crate) fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = T> + Send + 'static,
    {
        debug_assert!(self.has_room(), "spawned into a full window");
        // The task keeps the caller's span (mailbox, folder), so what it logs is placed.
        self.tasks.spawn(task.in_current_span());
    }

    /// The next finished task's result, or `None` when nothing runs. A task that
    /// panicked is [`crate::Error::Task`].
    pub(crate) async fn next(&mut self) -> Option<crate::Result<T>> {
        self.tasks
            .join_next()
            .await
            .map(|r| r.map_err(|e| crate::Error::task(&e)))
    }

    /// Stop every running task and wait until they are gone (for a hard cancel: work in
    /// flight is dropped, and a rerun redoes it).
    pub(crate) async fn abort_all(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[test]
    fn cancel_escalates_and_saturates() {
        let c = Cancel::new();
        assert!(!c.is_requested());
        c.escalate();
        assert!(c.is_requested() && !c.is_hard());
        c.escalate();
        c.escalate();
        assert!(c.is_hard());
    }

    /// One slow task does not hold up the others: with a width of 2, the nine quick
    /// tasks all finish while the slow one is still running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_task_does_not_hold_up_the_window() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let mut window = Window::new(2);
        window.spawn(async move {
            let _ = gate.await;
            "slow"
        });
        let mut finished = Vec::new();
        for _ in 0..9 {
            while !window.has_room() {
                finished.push(window.next().await.unwrap().unwrap());
            }
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            window.spawn(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                "quick"
            });
        }
        while finished.len() < 9 {
            finished.push(window.next().await.unwrap().unwrap());
        }
        assert!(finished.iter().all(|f| *f == "quick"), "{finished:?}");
        assert_eq!(
            peak.load(Ordering::SeqCst),
            1,
            "one slot stays with the slow task"
        );
        release.send(()).unwrap();
        assert_eq!(window.next().await.unwrap().unwrap(), "slow");
        assert!(window.next().await.is_none());
    }
}
