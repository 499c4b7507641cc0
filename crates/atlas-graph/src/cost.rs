//! What a backup costs in Graph requests, by kind of item (issue 14): every request the
//! source port makes on behalf of one kind (its folders, its delta pages, its content and
//! export streams) is counted under that kind, with the items its delta reported, so a
//! summary or a benchmark can say how many items one request brings per kind. Requests
//! made for no kind in particular (sign-in, directory, the mailbox folder tree shared by
//! the kinds other than mail) are counted apart.
//!
//! The kind travels with the source call as a task-local value (set by
//! [`crate::GraphSource`] around each port method), so concurrent calls of different
//! kinds on one client are told apart without threading it through every request.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use atlas_core::model::ItemKind;

tokio::task_local! {
    static REQUEST_KIND: ItemKind;
}

/// Run `f` with its Graph requests counted under `kind`.
pub(crate) async fn for_kind<F: Future>(kind: ItemKind, f: F) -> F::Output {
    REQUEST_KIND.scope(kind, f).await
}

/// Slots: one per [`ItemKind::ALL`] entry, then requests of no kind.
const SLOTS: usize = ItemKind::ALL.len() + 1;

fn slot(kind: Option<ItemKind>) -> usize {
    kind.and_then(|k| ItemKind::ALL.iter().position(|a| *a == k))
        .unwrap_or(SLOTS - 1)
}

/// Requests and items by kind (shared by a client's clones).
#[derive(Debug, Default)]
pub(crate) struct KindCounters {
    requests: [AtomicU64; SLOTS],
    items: [AtomicU64; SLOTS],
}

impl KindCounters {
    /// One request, under the kind of the source call it belongs to.
    pub(crate) fn request(&self) {
        let kind = REQUEST_KIND.try_with(|k| *k).ok();
        self.requests[slot(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// Items a delta page of `kind` reported.
    pub(crate) fn items(&self, kind: ItemKind, n: usize) {
        self.items[slot(Some(kind))].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Vec<RequestCost> {
        let kinds = ItemKind::ALL.iter().copied().map(Some).chain([None]);
        kinds
            .enumerate()
            .map(|(n, kind)| RequestCost {
                kind,
                requests: self.requests[n].load(Ordering::Relaxed),
                items: self.items[n].load(Ordering::Relaxed),
            })
            .filter(|c| c.requests > 0 || c.items > 0)
            .collect()
    }
}

/// The Graph requests made for one kind of item, and the items its delta reported (new
/// or changed; all of them in a first backup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCost {
    /// The kind; `None` for requests of no kind in particular (sign-in, directory, the
    /// mailbox folder tree shared by several kinds).
    pub kind: Option<ItemKind>,
    /// Requests sent, retries included.
    pub requests: u64,
    /// Items reported by the kind's delta.
    pub items: u64,
}

impl RequestCost {
    /// Items per request (0 without requests).
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    pub fn items_per_request(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.items as f64 / self.requests as f64
        }
    }
}
