//! Protection: which mailboxes have a recent complete snapshot, which only partial ones,
//! which none — the "unprotected mailboxes" report (`atlas report`) and the last-success
//! time of the backup metrics, read from the repository alone.
//!
//! [`histories`] reads what is needed and no more: snapshot key names (one listing), then
//! per mailbox the newest snapshot records until a complete one is found — usually one
//! record. [`classify`] is the pure verdict, given the time from the caller (core has no
//! clock).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::model::{MailboxId, SnapshotId, SnapshotStatus};
use crate::repo::{Repository, SnapshotInfo};

/// Mailboxes whose records are read at once.
const MAILBOXES_IN_FLIGHT: usize = 16;

/// One snapshot, as far as protection cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotBrief {
    /// Snapshot id.
    pub id: SnapshotId,
    /// Start of the run: the snapshot holds the mailbox as of (at least) this time.
    pub started: DateTime<Utc>,
    /// End of the run: when the snapshot was committed.
    pub finished: DateTime<Utc>,
    /// Complete or partial.
    pub status: SnapshotStatus,
}

/// What the repository holds for one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxHistory {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// Number of snapshots.
    pub snapshots: usize,
    /// The newest snapshot.
    pub latest: Option<SnapshotBrief>,
    /// The newest complete snapshot.
    pub latest_complete: Option<SnapshotBrief>,
}

/// The verdict on one mailbox, for a given maximum age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Protection {
    /// A complete snapshot started within the maximum age.
    Protected,
    /// Snapshots within the maximum age, but only partial ones (interrupted runs, gaps):
    /// some of the mailbox is protected, not all of it.
    PartialOnly,
    /// Snapshots, but none within the maximum age: backups of it stopped.
    Stale,
    /// No snapshot at all.
    Unprotected,
}

/// The verdict for a mailbox with history `h` (`None`: nothing in the repository) at
/// `now`: snapshots count when they *started* within `max_age` before `now` — the start is
/// the point in time a snapshot is guaranteed to cover.
pub fn classify(h: Option<&MailboxHistory>, now: DateTime<Utc>, max_age: Duration) -> Protection {
    let cutoff = now - max_age;
    let Some(h) = h else {
        return Protection::Unprotected;
    };
    match (h.latest_complete, h.latest) {
        (Some(c), _) if c.started >= cutoff => Protection::Protected,
        (_, Some(l)) if l.started >= cutoff => Protection::PartialOnly,
        (_, Some(_)) | (Some(_), None) => Protection::Stale,
        (None, None) => Protection::Unprotected,
    }
}

/// The history of every mailbox in the repository (`only: None`), or of the given ones (a
/// mailbox without snapshots then has an empty history). Sorted by address.
pub async fn histories(
    repo: &Repository,
    only: Option<&[MailboxId]>,
) -> Result<Vec<MailboxHistory>> {
    let by_name = repo.snapshots_by_mailbox().await?;
    let mailboxes = match only {
        Some(list) => list.to_vec(),
        None => repo.list_mailboxes().await?,
    };
    let mut pending = mailboxes.into_iter().map(|m| {
        let snaps = by_name
            .get(&repo.mailbox_key_name(&m))
            .cloned()
            .unwrap_or_default();
        (m, snaps)
    });
    let mut out = Vec::new();
    let mut set: JoinSet<Result<MailboxHistory>> = JoinSet::new();
    loop {
        while set.len() < MAILBOXES_IN_FLIGHT {
            let Some((mailbox, snaps)) = pending.next() else {
                break;
            };
            let repo = repo.clone();
            set.spawn(async move { history(&repo, mailbox, &snaps).await });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        out.push(joined.map_err(|e| Error::task(&e))??);
    }
    out.sort_by(|a, b| a.mailbox.address().cmp(b.mailbox.address()));
    Ok(out)
}

/// Newest records first until a complete one (`snaps` is oldest first, from key names).
async fn history(
    repo: &Repository,
    mailbox: MailboxId,
    snaps: &[SnapshotInfo],
) -> Result<MailboxHistory> {
    let mut h = MailboxHistory {
        mailbox,
        snapshots: snaps.len(),
        latest: None,
        latest_complete: None,
    };
    for info in snaps.iter().rev() {
        let record = repo.load_snapshot(info.id).await?.record;
        let brief = SnapshotBrief {
            id: info.id,
            started: record.started,
            finished: record.finished,
            status: record.status,
        };
        h.latest.get_or_insert(brief);
        if record.status == SnapshotStatus::Complete {
            h.latest_complete = Some(brief);
            break;
        }
    }
    Ok(h)
}

/// Histories by lower-cased address, for lookups.
pub fn by_address(histories: &[MailboxHistory]) -> HashMap<&str, &MailboxHistory> {
    histories.iter().map(|h| (h.mailbox.address(), h)).collect()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone as _, Utc};

    use super::{MailboxHistory, Protection, SnapshotBrief, classify};
    use crate::model::{MailboxId, SnapshotId, SnapshotStatus};

    fn brief(hours_ago: i64, status: SnapshotStatus) -> SnapshotBrief {
        let now = Utc
            .with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
            .single()
            .expect("valid");
        SnapshotBrief {
            id: SnapshotId::random(),
            started: now - Duration::hours(hours_ago),
            finished: now - Duration::hours(hours_ago) + Duration::minutes(30),
            status,
        }
    }

    #[test]
    fn the_verdict_depends_on_the_newest_complete_and_the_newest_snapshot() {
        use SnapshotStatus::{Complete, Partial};
        let now = Utc
            .with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
            .single()
            .expect("valid");
        let day = Duration::hours(24);
        let h = |latest: Option<SnapshotBrief>, complete: Option<SnapshotBrief>| MailboxHistory {
            mailbox: MailboxId::new("a@contoso.com"),
            snapshots: usize::from(latest.is_some()) + usize::from(complete.is_some()),
            latest,
            latest_complete: complete,
        };
        let fresh_complete = brief(2, Complete);
        let old_complete = brief(30, Complete);
        let fresh_partial = brief(1, Partial);
        let old_partial = brief(40, Partial);
        let table = [
            (
                Some(h(Some(fresh_complete), Some(fresh_complete))),
                Protection::Protected,
            ),
            // A newer partial run does not undo the complete one before it.
            (
                Some(h(Some(fresh_partial), Some(fresh_complete))),
                Protection::Protected,
            ),
            (
                Some(h(Some(fresh_partial), Some(old_complete))),
                Protection::PartialOnly,
            ),
            (Some(h(Some(fresh_partial), None)), Protection::PartialOnly),
            (
                Some(h(Some(old_complete), Some(old_complete))),
                Protection::Stale,
            ),
            (Some(h(Some(old_partial), None)), Protection::Stale),
            (Some(h(None, None)), Protection::Unprotected),
            (None, Protection::Unprotected),
        ];
        for (i, (history, expected)) in table.into_iter().enumerate() {
            assert_eq!(classify(history.as_ref(), now, day), expected, "row {i}");
        }
        // Exactly at the limit still counts.
        let edge = SnapshotBrief {
            started: now - day,
            ..fresh_complete
        };
        assert_eq!(
            classify(Some(&h(Some(edge), Some(edge))), now, day),
            Protection::Protected
        );
    }
}
