//! Retention: `atlas forget` (keep policy per mailbox) and `atlas delete` (snapshots, a
//! mailbox, or the whole repository).
//!
//! Both are plan-then-execute: the plan is a plain value listing exactly which snapshot
//! records go (what `--dry-run` prints); executing it deletes **records only**, so an
//! interruption at any point leaves a consistent repository with at most unreferenced
//! data. Reclaiming that data is prune ([`crate::repo::prune`]): the `*_and_prune`
//! variants run it right after the records are gone (`forget --prune`, and `delete`, which
//! the spec defines as "records first, then data no snapshot references"), and
//! [`plan_prune`] is its dry run as if a plan's snapshots were already removed. `purge` is
//! different: it removes every object,
//! records first, then indexes, then packs, then the config and finally the key, so each
//! intermediate state is still a consistent (smaller) repository.
//!
//! Policies follow restic: snapshots are ordered newest first; `last` keeps the N newest;
//! `daily`/`weekly`/`monthly`/`yearly` keep the newest snapshot of each of the N newest
//! days/ISO weeks/months/years that have one; `within` keeps everything started within the
//! duration before the newest snapshot (not before "now": the library reads no clock, and
//! a mailbox whose backups stopped keeps its last state). A snapshot kept by any rule is
//! kept. Times are UTC.

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{MailboxId, SnapshotId};
use crate::ports::{Clock, Event, Reporter, Task};
use crate::repo::lease;
use crate::repo::prune::{PruneOptions, PruneSummary, prune};
use crate::repo::{Repository, SnapshotInfo};

/// Which snapshots to keep. Every field `None` keeps nothing, which is refused; so is a
/// policy whose rules all keep zero (`--keep-last 0`) unless the caller says it means it
/// ([`ForgetOptions::allow_empty`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// Keep the N newest.
    pub last: Option<u32>,
    /// Keep the newest of each of the N newest days.
    pub daily: Option<u32>,
    /// … ISO weeks.
    pub weekly: Option<u32>,
    /// … months.
    pub monthly: Option<u32>,
    /// … years.
    pub yearly: Option<u32>,
    /// Keep everything within this duration before the newest snapshot.
    pub within: Option<Duration>,
}

impl KeepPolicy {
    fn is_empty(&self) -> bool {
        self.last.is_none()
            && self.daily.is_none()
            && self.weekly.is_none()
            && self.monthly.is_none()
            && self.yearly.is_none()
            && self.within.is_none()
    }

    /// Whether the policy keeps no snapshot of any mailbox: no rule, or only rules that
    /// keep zero. `within` always keeps the newest snapshot (it counts back from it).
    pub fn keeps_nothing(&self) -> bool {
        self.within.is_none()
            && [
                self.last,
                self.daily,
                self.weekly,
                self.monthly,
                self.yearly,
            ]
            .iter()
            .all(|n| n.unwrap_or(0) == 0)
    }
}

/// A snapshot the policy keeps, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// Snapshot id.
    pub id: SnapshotId,
    /// Start time.
    pub started: DateTime<Utc>,
    /// Rules that keep it (`last`, `daily`, …).
    pub reasons: Vec<&'static str>,
}

/// A snapshot the plan removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    /// Snapshot id.
    pub id: SnapshotId,
    /// Start time.
    pub started: DateTime<Utc>,
}

/// Maps a time to its day/week/month/year bucket.
type Bucket = fn(DateTime<Utc>) -> (i32, u32);

/// Decide, for one mailbox's snapshots (any order), what the policy keeps and removes.
/// Both lists are newest first.
pub fn apply_policy(snapshots: &[SnapshotInfo], policy: &KeepPolicy) -> (Vec<Kept>, Vec<Removed>) {
    let mut sorted = snapshots.to_vec();
    sorted.sort_by_key(|s| std::cmp::Reverse((s.started, s.id)));
    let newest = sorted.first().map(|s| s.started);
    let rules: [(&'static str, Option<u32>, Bucket); 4] = [
        ("daily", policy.daily, |t| (t.year(), t.ordinal())),
        ("weekly", policy.weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week())
        }),
        ("monthly", policy.monthly, |t| (t.year(), t.month())),
        ("yearly", policy.yearly, |t| (t.year(), 0)),
    ];
    let mut last_bucket: [Option<(i32, u32)>; 4] = [None; 4];
    let mut used = [0u32; 4];
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for (n, s) in sorted.iter().enumerate() {
        let mut reasons = Vec::new();
        if policy.last.is_some_and(|l| (n as u64) < u64::from(l)) {
            reasons.push("last");
        }
        for (i, (name, limit, bucket)) in rules.iter().enumerate() {
            let Some(limit) = limit else { continue };
            let b = bucket(s.started);
            if used[i] < *limit && last_bucket[i] != Some(b) {
                last_bucket[i] = Some(b);
                used[i] += 1;
                reasons.push(name);
            }
        }
        if let (Some(w), Some(newest)) = (policy.within, newest) {
            if s.started >= newest - w {
                reasons.push("within");
            }
        }
        if reasons.is_empty() {
            removed.push(Removed {
                id: s.id,
                started: s.started,
            });
        } else {
            kept.push(Kept {
                id: s.id,
                started: s.started,
                reasons,
            });
        }
    }
    (kept, removed)
}

/// Options of `forget`.
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// The policy, applied to each mailbox separately.
    pub policy: KeepPolicy,
    /// Mailboxes to apply it to; empty = every mailbox in the repository.
    pub mailboxes: Vec<MailboxId>,
    /// The caller means a policy that keeps nothing (`--keep-last 0`): every snapshot of
    /// the mailboxes goes. Without it such a policy is refused, as a typo or a variable
    /// left empty in a script would otherwise delete a whole backup history.
    pub allow_empty: bool,
}

/// The plan for one mailbox.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxForgetPlan {
    /// Mailbox address.
    pub mailbox: String,
    /// Kept snapshots, newest first, with reasons.
    pub keep: Vec<Kept>,
    /// Snapshots whose records will be deleted, newest first.
    pub remove: Vec<Removed>,
}

/// What `forget` will do (printed as is by `--dry-run`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForgetPlan {
    /// Per mailbox.
    pub mailboxes: Vec<MailboxForgetPlan>,
}

impl ForgetPlan {
    /// Every snapshot the plan removes.
    pub fn removals(&self) -> impl Iterator<Item = SnapshotId> + '_ {
        self.mailboxes
            .iter()
            .flat_map(|m| m.remove.iter().map(|r| r.id))
    }
}

/// Plan `forget` from key names only (no record is decrypted). An empty policy is refused
/// (it would remove every snapshot); so is a policy that keeps nothing
/// (`--keep-last 0`) unless [`ForgetOptions::allow_empty`] says so, and an unknown mailbox.
pub async fn plan_forget(repo: &Repository, opts: &ForgetOptions) -> Result<ForgetPlan> {
    if opts.policy.is_empty() {
        return Err(Error::InvalidInput {
            reason: "no keep rule given: refusing to forget every snapshot".into(),
        });
    }
    if opts.policy.keeps_nothing() && !opts.allow_empty {
        return Err(Error::InvalidInput {
            reason: "this policy keeps no snapshot: refusing to forget every snapshot \
                     (add --allow-empty if that is what you mean)"
                .into(),
        });
    }
    let known = repo.list_mailboxes().await?;
    let targets = if opts.mailboxes.is_empty() {
        known
    } else {
        for m in &opts.mailboxes {
            if !known.contains(m) {
                return Err(Error::MailboxNotFound {
                    mailbox: m.address().to_owned(),
                });
            }
        }
        opts.mailboxes.clone()
    };
    let mut plan = ForgetPlan {
        mailboxes: Vec::new(),
    };
    for mb in targets {
        let infos = repo.list_snapshots(&mb).await?;
        let (keep, remove) = apply_policy(&infos, &opts.policy);
        plan.mailboxes.push(MailboxForgetPlan {
            mailbox: mb.address().to_owned(),
            keep,
            remove,
        });
    }
    Ok(plan)
}

/// What a removal run did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovalSummary {
    /// Snapshot records deleted.
    pub snapshots_removed: usize,
    /// Other objects deleted (purge only).
    pub objects_removed: usize,
    /// Objects the store refused to delete (Object Lock retention), by key.
    pub retained: Vec<String>,
    /// The same objects with their retain-until dates (and, after a prune, the objects
    /// the prune could not delete), for the report.
    pub retained_objects: Vec<crate::repo::retention::RetainedObject>,
    /// What the prune that followed did (the `*_and_prune` variants only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSummary>,
    /// Why the prune of `delete` or `forget --prune` did not run: a backup of another
    /// mailbox (or another prune) holds the repository. The records are gone; the data
    /// only they used is reclaimed by the next prune.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_deferred: Option<String>,
}

impl RemovalSummary {
    fn add(&mut self, removal: crate::repo::Removal) {
        self.objects_removed += removal.removed;
        for r in removal.retained {
            self.retained.push(r.key.clone());
            self.retained_objects.push(r);
        }
    }

    /// Everything planned was removed (the CLI exits non-zero otherwise).
    pub fn is_complete(&self) -> bool {
        self.retained.is_empty() && self.prune.as_ref().is_none_or(|p| p.retained.is_empty())
    }
}

/// Delete the records a forget plan lists. Records only: see the module docs.
pub async fn execute_forget(repo: &Repository, plan: &ForgetPlan) -> Result<RemovalSummary> {
    remove_snapshots(repo, plan.removals()).await
}

/// `forget --prune`: delete the plan's records, then prune. The prune runs only when every
/// record went (a record kept by Object Lock still references its data anyway, but a
/// partial result is reported as such and not made bigger). As for `delete`, a prune that
/// cannot run now because a backup (or another prune) holds the repository is deferred,
/// not a failure ([`RemovalSummary::prune_deferred`]): the records are already gone.
pub async fn execute_forget_and_prune(
    repo: &Repository,
    plan: &ForgetPlan,
    opts: &PruneOptions,
    clock: &dyn Clock,
) -> Result<RemovalSummary> {
    let mut sum = execute_forget(repo, plan).await?;
    if sum.is_complete() {
        prune_or_defer(repo, &mut sum, opts, clock).await?;
    }
    Ok(sum)
}

/// The prune after a removal, into `sum`. A backup of some mailbox (or another prune)
/// holding the repository defers it: what was asked for — the records — is done;
/// reclaiming the space waits for a later prune, which cannot overlap a backup (see
/// `repo::prune`). Any other failure is the run's.
async fn prune_or_defer(
    repo: &Repository,
    sum: &mut RemovalSummary,
    opts: &PruneOptions,
    clock: &dyn Clock,
) -> Result<()> {
    match prune(repo, &real_run(opts), clock).await {
        Ok(p) => sum.prune = Some(p),
        Err(e @ (Error::LeaseHeld { .. } | Error::MaintenanceRunning { .. })) => {
            sum.prune_deferred = Some(e.to_string());
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// The dry run of prune after removing `removed` (a forget or delete plan's snapshots):
/// nothing is written; the summary lists what would go.
pub async fn plan_prune(
    repo: &Repository,
    removed: impl IntoIterator<Item = SnapshotId>,
    opts: &PruneOptions,
    clock: &dyn Clock,
) -> Result<PruneSummary> {
    let mut o = opts.clone();
    o.dry_run = true;
    o.ignore_snapshots.extend(removed);
    prune(repo, &o, clock).await
}

fn real_run(opts: &PruneOptions) -> PruneOptions {
    PruneOptions {
        dry_run: false,
        ..opts.clone()
    }
}

async fn remove_snapshots(
    repo: &Repository,
    ids: impl Iterator<Item = SnapshotId>,
) -> Result<RemovalSummary> {
    let mut sum = RemovalSummary::default();
    for id in ids {
        match repo.delete_snapshot(id).await {
            Ok(()) => sum.snapshots_removed += 1,
            // Already gone (a concurrent forget): the goal is reached.
            Err(Error::SnapshotNotFound { .. }) => {}
            Err(Error::Store(crate::ports::StoreError::Retained { key, until })) => {
                sum.retained.push(key.clone());
                sum.retained_objects
                    .push(crate::repo::retention::RetainedObject { key, until });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(sum)
}

/// What `delete` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteTarget {
    /// One snapshot.
    Snapshot(SnapshotId),
    /// Every snapshot of a mailbox (and its mailbox record, so it leaves `list`).
    Mailbox(MailboxId),
    /// Everything, including the wrapped key: the repository is gone afterwards.
    Purge,
}

/// The plan of a `delete` (what the confirmation prompt shows).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletePlan {
    /// Snapshot records to delete.
    pub snapshots: Vec<Removed>,
    /// Mailbox addresses whose records go.
    pub mailboxes: Vec<String>,
    /// Whether every object (and the key) goes.
    pub purge: bool,
    /// Objects in the store (purge only; everything is deleted).
    pub objects: usize,
}

/// Plan a delete. Unknown snapshot or mailbox is an error.
pub async fn plan_delete(repo: &Repository, target: &DeleteTarget) -> Result<DeletePlan> {
    let mut plan = DeletePlan {
        snapshots: Vec::new(),
        mailboxes: Vec::new(),
        purge: false,
        objects: 0,
    };
    match target {
        DeleteTarget::Snapshot(id) => {
            let snap = repo.load_snapshot(*id).await?;
            plan.snapshots.push(Removed {
                id: *id,
                started: snap.record.started,
            });
        }
        DeleteTarget::Mailbox(mb) => {
            if !repo.list_mailboxes().await?.contains(mb) {
                return Err(Error::MailboxNotFound {
                    mailbox: mb.address().to_owned(),
                });
            }
            plan.snapshots = repo
                .list_snapshots(mb)
                .await?
                .iter()
                .rev()
                .map(|s| Removed {
                    id: s.id,
                    started: s.started,
                })
                .collect();
            plan.mailboxes.push(mb.address().to_owned());
        }
        DeleteTarget::Purge => {
            plan.purge = true;
            plan.snapshots = repo
                .list_all_snapshots()
                .await?
                .iter()
                .rev()
                .map(|s| Removed {
                    id: s.id,
                    started: s.started,
                })
                .collect();
            plan.mailboxes = repo
                .list_mailboxes()
                .await?
                .iter()
                .map(|m| m.address().to_owned())
                .collect();
            plan.objects = repo.object_count().await?;
        }
    }
    Ok(plan)
}

/// Execute a delete plan: snapshot records first; then, for a mailbox, its mailbox record
/// (after its last snapshot is gone, so `list` never shows snapshots without a mailbox);
/// for a purge, every remaining object in the safe order (records, locks, index, packs,
/// config, key last).
///
/// A purge can delete tens of thousands of objects: it reports them as [`Task::Delete`]
/// (total: the plan's object count), like prune's deletions.
///
/// Deleting a mailbox holds that mailbox's lease (its scope is the mailbox, not the
/// repository): it is refused with [`Error::LeaseHeld`] while that mailbox is being
/// backed up, a backup of it cannot start in the middle, and backups of other mailboxes
/// are no obstacle. `owner` is written into the lease.
pub async fn execute_delete(
    repo: &Repository,
    plan: &DeletePlan,
    owner: &str,
    clock: &dyn Clock,
    reporter: &dyn Reporter,
) -> Result<RemovalSummary> {
    if plan.purge {
        reporter.report(Event::TaskStarted {
            task: Task::Delete,
            total: Some(plan.objects as u64),
            bytes: None,
        });
        let done = purge(repo, plan, reporter).await;
        reporter.report(Event::TaskDone { task: Task::Delete });
        return done;
    }
    let mut held = Vec::new();
    for address in &plan.mailboxes {
        match lease::acquire(repo, &MailboxId::new(address), owner, clock).await {
            Ok(h) => held.push(h),
            Err(e) => {
                release_all(repo, &held).await;
                return Err(e);
            }
        }
    }
    let result = delete_records(repo, plan).await;
    release_all(repo, &held).await;
    result
}

async fn delete_records(repo: &Repository, plan: &DeletePlan) -> Result<RemovalSummary> {
    let mut sum = remove_snapshots(repo, plan.snapshots.iter().map(|s| s.id)).await?;
    if !sum.is_complete() {
        return Ok(sum);
    }
    for address in &plan.mailboxes {
        let mb = MailboxId::new(address);
        if repo.list_snapshots(&mb).await?.is_empty() {
            sum.add(repo.delete_mailbox_record(&mb).await?);
        }
    }
    Ok(sum)
}

/// The purge of [`execute_delete`]: snapshot records, then every other object.
async fn purge(
    repo: &Repository,
    plan: &DeletePlan,
    reporter: &dyn Reporter,
) -> Result<RemovalSummary> {
    let mut sum = remove_snapshots(repo, plan.snapshots.iter().map(|s| s.id)).await?;
    reporter.report(Event::TaskProgress {
        task: Task::Delete,
        done: (sum.snapshots_removed + sum.retained.len()) as u64,
        bytes: 0,
    });
    if !sum.is_complete() {
        return Ok(sum);
    }
    sum.add(repo.purge_objects(reporter).await?);
    Ok(sum)
}

/// Release leases taken for a delete; a failure only delays them (they expire, and the
/// process's exit path tries again), so it is logged, not returned over the result.
async fn release_all(repo: &Repository, held: &[std::sync::Arc<lease::Held>]) {
    for h in held {
        if let Err(e) = lease::release(repo, h).await {
            tracing::warn!("releasing the lease taken for delete: {e}");
        }
    }
}

/// `delete` of snapshots or a mailbox as the spec defines it: records first
/// ([`execute_delete`]), then the data no snapshot references (prune). A purge needs no
/// prune (everything goes) and runs as [`execute_delete`]. When the prune cannot run now
/// because another mailbox is being backed up, the delete still succeeds and says so
/// ([`RemovalSummary::prune_deferred`]).
pub async fn execute_delete_and_prune(
    repo: &Repository,
    plan: &DeletePlan,
    opts: &PruneOptions,
    clock: &dyn Clock,
) -> Result<RemovalSummary> {
    let mut sum = execute_delete(repo, plan, &opts.owner, clock, opts.reporter.as_ref()).await?;
    if sum.is_complete() && !plan.purge {
        prune_or_defer(repo, &mut sum, opts, clock).await?;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn snaps(times: &[(i32, u32, u32, u32)]) -> Vec<SnapshotInfo> {
        times
            .iter()
            .map(|(y, m, d, h)| SnapshotInfo {
                id: SnapshotId::random(),
                started: Utc.with_ymd_and_hms(*y, *m, *d, *h, 0, 0).unwrap(),
            })
            .collect()
    }

    fn kept_times(k: &[Kept]) -> Vec<String> {
        k.iter()
            .map(|k| k.started.format("%Y-%m-%d %H").to_string())
            .collect()
    }

    #[test]
    fn last_daily_monthly_and_yearly_follow_restic() {
        let s = snaps(&[
            (2024, 12, 31, 10),
            (2025, 6, 1, 10),
            (2026, 1, 5, 9),
            (2026, 1, 5, 18),
            (2026, 1, 6, 9),
            (2026, 2, 1, 9),
            (2026, 2, 2, 9),
        ]);
        let (k, r) = apply_policy(
            &s,
            &KeepPolicy {
                last: Some(1),
                daily: Some(3),
                ..KeepPolicy::default()
            },
        );
        assert_eq!(
            kept_times(&k),
            ["2026-02-02 09", "2026-02-01 09", "2026-01-06 09"]
        );
        assert_eq!(k[0].reasons, ["last", "daily"]);
        assert_eq!(r.len(), 4);
        let (k, _) = apply_policy(
            &s,
            &KeepPolicy {
                monthly: Some(2),
                yearly: Some(3),
                ..KeepPolicy::default()
            },
        );
        assert_eq!(
            kept_times(&k),
            [
                "2026-02-02 09",
                "2026-01-06 09",
                "2025-06-01 10",
                "2024-12-31 10"
            ]
        );
        let (k, _) = apply_policy(
            &s,
            &KeepPolicy {
                within: Some(Duration::days(27)),
                ..KeepPolicy::default()
            },
        );
        assert_eq!(
            kept_times(&k),
            ["2026-02-02 09", "2026-02-01 09", "2026-01-06 09"]
        );
        let (k, r) = apply_policy(
            &s,
            &KeepPolicy {
                last: Some(100),
                ..KeepPolicy::default()
            },
        );
        assert_eq!((k.len(), r.len()), (7, 0));
    }

    #[test]
    fn weekly_uses_iso_weeks() {
        // 2026-01-04 is a Sunday (ISO week 1 of 2026), 2026-01-05 a Monday (week 2).
        let s = snaps(&[
            (2026, 1, 3, 9),
            (2026, 1, 4, 9),
            (2026, 1, 5, 9),
            (2026, 1, 6, 9),
        ]);
        let (k, _) = apply_policy(
            &s,
            &KeepPolicy {
                weekly: Some(2),
                ..KeepPolicy::default()
            },
        );
        assert_eq!(kept_times(&k), ["2026-01-06 09", "2026-01-04 09"]);
    }
}
