//! A backup of many mailboxes as plan → execute, like restore and the retention commands.
//!
//! [`BackupRequest`] (what the caller asks) → [`plan`] (reads the source only: which
//! mailboxes, checked before anything is written) → [`BackupPlan`] (a plain value) →
//! [`execute`] (runs each mailbox, applies the skip-versus-fail rule, locks the new
//! snapshots) → [`BackupReport`] with its [`BackupReport::verdict`].
//!
//! The policy lives here, not in a front end, so a library caller gets the same
//! selection, the same rules and the same immutability as `atlas backup`:
//!
//! - **Which mailboxes.** Named mailboxes are each resolved, and asked once for their
//!   folders, before anything is written: an unknown address, a user without an Exchange
//!   Online mailbox or a missing permission is an error of the request
//!   ([`Error::Source`]), not a failed mailbox ([`plan_for`] asks from the folder bookmark
//!   of the mailbox's latest snapshot, as the backup does). A tenant-wide backup takes every mailbox of
//!   the chosen [`MailboxKind`]s ([`kind_selected`]); the others are listed as skipped.
//! - **Which folders.** Every folder filter must select a folder: a misspelled one
//!   (`Inbx`) is [`Error::InvalidInput`] naming the near matches, never a snapshot that
//!   claims every folder was captured.
//! - **Limits.** Mailboxes in parallel ([`BackupPlan::mailboxes_in_parallel`]) and
//!   downloads in flight per mailbox ([`BackupOptions::downloads_in_flight`]).
//! - **Skip versus fail.** One mailbox failing never stops the others. Tenant-wide, a
//!   directory user whose mailbox turns out not to exist (its kind could not be told
//!   beforehand) is skipped, not failed: there is nothing to back up.
//! - **Immutability.** With [`BackupOptions::retention`], execute first checks that the
//!   store can enforce the lock (nothing is written otherwise), and after the runs brings
//!   everything each new snapshot needs to that retention (`repo::retention::apply`). A
//!   snapshot that could not be locked makes the run fail.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{
    BackupOptions, BackupSummary, KindSkipped, MailboxOutcome, backup_mailboxes,
    kinds_skipped_warning, resolve_kinds,
};
use crate::error::{Error, Result};
use crate::model::{ItemKind, KindSet, SnapshotId};
use crate::ports::{
    Clock, MailSource, MailboxKind, Reporter, Retention, SourceError, SourceMailbox,
};
use crate::repo::{Repository, RetentionReport, retention};
use crate::service::Cancel;
use crate::service::catalog::{check_folder_filters, path_selected};
use crate::service::shard::{Shard, shard_key};

/// Which mailboxes a backup covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxSelection {
    /// These mailboxes (address, UPN or directory object id), in this order.
    Named(Vec<String>),
    /// Every mailbox of the tenant whose kind is one of these (see [`kind_selected`]).
    Tenant {
        /// Kinds to include.
        kinds: Vec<MailboxKind>,
    },
}

impl MailboxSelection {
    /// Every mailbox of the tenant that can hold mail: licensed, shared and unlicensed.
    pub fn tenant() -> Self {
        Self::Tenant {
            kinds: vec![
                MailboxKind::Licensed,
                MailboxKind::Shared,
                MailboxKind::Unlicensed,
            ],
        }
    }
}

/// Whether a tenant-wide selection of `kinds` includes a mailbox of `kind`.
///
/// A mailbox whose kind the source could not tell ([`MailboxKind::Unknown`], e.g. without
/// `MailboxSettings.Read`) is always included: trying costs one request and a clear
/// "no mailbox" skip, while leaving it out could lose a mailbox. A user known to have no
/// mailbox never is.
pub fn kind_selected(kind: MailboxKind, kinds: &[MailboxKind]) -> bool {
    match kind {
        MailboxKind::Unknown => true,
        MailboxKind::NoMailbox => false,
        k => kinds.contains(&k),
    }
}

/// Mailboxes asked, at most, which kinds the app may read.
const PROBES: usize = 3;

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// Which mailboxes.
    pub mailboxes: MailboxSelection,
    /// How each mailbox is backed up: folder filters, full or incremental, page size,
    /// downloads in flight, lease owner, Object Lock retention.
    pub options: BackupOptions,
    /// Mailboxes backed up at once (at least one).
    pub mailboxes_in_parallel: usize,
    /// Only this worker's share of the selection (`--shard I/N`): see [`Shard`].
    pub shard: Option<Shard>,
    /// Which kinds of item (`--kinds`); the plan narrows `options.folder_options.kinds`
    /// to what the app may read.
    pub item_kinds: KindSet,
    /// Whether `item_kinds` was asked for by name: then a kind the app may not read makes
    /// the run partial (exit 2), naming the permission; otherwise it is left out with one
    /// warning and the run can still be complete.
    pub item_kinds_explicit: bool,
}

impl BackupRequest {
    /// Every selected mailbox with default options, four at a time, every kind the app
    /// may read.
    pub fn new(mailboxes: MailboxSelection) -> Self {
        Self {
            mailboxes,
            options: BackupOptions::default(),
            mailboxes_in_parallel: 4,
            shard: None,
            item_kinds: KindSet::ALL,
            item_kinds_explicit: false,
        }
    }
}

/// Why a mailbox of the tenant is not backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum SkipReason {
    /// Its kind is not among the selected kinds.
    KindNotSelected(MailboxKind),
    /// It turned out to have no Exchange Online mailbox.
    NoMailbox,
}

/// A mailbox of the tenant that is not backed up, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Mailbox address.
    pub mailbox: String,
    /// Why.
    pub reason: SkipReason,
}

/// What a backup will do; a plain value.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    /// The mailboxes to back up, in order.
    pub mailboxes: Vec<SourceMailbox>,
    /// Mailboxes of the tenant left out, and why.
    pub skipped: Vec<Skipped>,
    /// Whether the whole tenant was asked for (then a mailbox that turns out not to exist
    /// is skipped; a named one is an error before anything runs).
    pub tenant_wide: bool,
    /// How each mailbox is backed up.
    pub options: BackupOptions,
    /// Mailboxes backed up at once (at least one).
    pub mailboxes_in_parallel: usize,
    /// The share this worker took, when the request was sharded.
    pub shard: Option<ShardShare>,
    /// Kinds left out because the app may not read them (one warning for the run).
    pub kinds_skipped: Vec<KindSkipped>,
    /// Whether those kinds were asked for by name (the run is then partial).
    pub kinds_explicit: bool,
    /// The permission mail's export stream needs and the app lacks, when the options
    /// keep it (`--fidelity full`): then [`execute`] backs up nothing and the run is
    /// partial, naming it in a warning.
    pub stream_missing: Option<String>,
}

/// The warning of a run refused because mail's export stream cannot be read.
fn stream_missing_warning(permission: &str) -> String {
    format!(
        "not backing up anything: --fidelity full keeps each message's export stream, which needs the {permission} application permission (admin consent); grant it, or back up MIME alone (--fidelity mime)"
    )
}

/// What a sharded plan took: `mailboxes` of the `selected` ones (the whole selection, as
/// every worker sees it), and as many of its skipped mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardShare {
    /// This worker's shard.
    pub shard: Shard,
    /// Mailboxes the whole selection has, over all shards.
    pub selected: usize,
    /// Mailboxes this shard backs up.
    pub mailboxes: usize,
}

/// Plan a backup: resolve the selection against the source and check the folder filters.
/// Reads the source only; nothing is written. See the module docs for the rules.
pub async fn plan(source: &dyn MailSource, request: &BackupRequest) -> Result<BackupPlan> {
    plan_with(source, request, None).await
}

/// [`plan`] for a backup into `repo`: each named mailbox's folders are listed from the
/// folder bookmark of its latest snapshot there (`mailFolders/delta` for Microsoft Graph:
/// one request for an unchanged tree), as the backup itself lists them, instead of afresh
/// (a listing per parent folder and one request per well-known folder). Reads `repo`
/// only; a snapshot that cannot be read just means a fresh listing.
pub async fn plan_for(
    repo: &Repository,
    source: &dyn MailSource,
    request: &BackupRequest,
) -> Result<BackupPlan> {
    plan_with(source, request, Some(repo)).await
}

async fn plan_with(
    source: &dyn MailSource,
    request: &BackupRequest,
    repo: Option<&Repository>,
) -> Result<BackupPlan> {
    let listed = match &request.mailboxes {
        MailboxSelection::Named(_) => None,
        MailboxSelection::Tenant { .. } => {
            Some(source.list_mailboxes().await.map_err(Error::Source)?)
        }
    };
    let mut request = request.clone();
    let (kinds, kinds_skipped, probe) = plan_kinds(source, &request, listed.as_deref()).await?;
    request.options.folder_options.kinds = kinds;
    let stream_missing = match probe {
        Some(p)
            if kinds.contains(ItemKind::Mail)
                && request.options.folder_options.fidelity.keeps_mail_stream() =>
        {
            stream_permission(source, &p).await?
        }
        _ => None,
    };
    let request = &request;
    let opts = &request.options;
    let (mailboxes, skipped, tenant_wide, shard) = match &request.mailboxes {
        MailboxSelection::Named(names) => {
            // Every worker resolves every name (a typo fails every shard alike), then
            // keeps its share.
            let (chosen, share) =
                take_share(named(source, names, request, repo).await?, request.shard);
            (chosen, Vec::new(), false, share)
        }
        MailboxSelection::Tenant { kinds } => {
            let (chosen, skipped): (Vec<_>, Vec<_>) = listed
                .unwrap_or_default()
                .into_iter()
                .partition(|m| kind_selected(m.kind, kinds));
            // Each worker lists only its own share of the skipped mailboxes too, so the N
            // reports together name each mailbox once.
            let skipped = skipped
                .into_iter()
                .filter(|m| request.shard.is_none_or(|s| s.owns_mailbox(&m.id)))
                .map(|m| Skipped {
                    mailbox: m.address().to_owned(),
                    reason: SkipReason::KindNotSelected(m.kind),
                })
                .collect();
            let (chosen, share) = take_share(chosen, request.shard);
            if !opts.folders.is_empty() {
                check_filters_in_tenant(source, &chosen, request).await?;
            }
            (chosen, skipped, true, share)
        }
    };
    Ok(BackupPlan {
        mailboxes,
        skipped,
        tenant_wide,
        options: opts.clone(),
        mailboxes_in_parallel: request.mailboxes_in_parallel.max(1),
        shard,
        kinds_skipped,
        kinds_explicit: request.item_kinds_explicit,
        stream_missing,
    })
}

/// The permission mail's export stream lacks (`--fidelity full`), asked of one mailbox
/// before anything is written: without it every mailbox would fail half-way, after its
/// MIME was read. `None` when the stream can be read, or when the mailbox cannot say (the
/// run meets that failure again, per mailbox).
async fn stream_permission(
    source: &dyn MailSource,
    probe: &SourceMailbox,
) -> Result<Option<String>> {
    match source.stream_access(probe).await {
        Ok(missing) => Ok(missing),
        Err(e @ SourceError::Auth(_)) => Err(Error::Source(e)),
        Err(_) => Ok(None),
    }
}

/// This worker's share of the selected mailboxes (all of them without a shard).
fn take_share(
    selected: Vec<SourceMailbox>,
    shard: Option<Shard>,
) -> (Vec<SourceMailbox>, Option<ShardShare>) {
    let Some(shard) = shard else {
        return (selected, None);
    };
    let total = selected.len();
    let mine = shard.select(selected, |m| shard_key(&m.id));
    let taken = ShardShare {
        shard,
        selected: total,
        mailboxes: mine.len(),
    };
    (mine, Some(taken))
}

/// Which kinds a run backs up (see [`resolve_kinds`]): asked of up to [`PROBES`]
/// mailboxes of the selection, and the kinds left out with the permission each lacks.
async fn plan_kinds(
    source: &dyn MailSource,
    request: &BackupRequest,
    listed: Option<&[SourceMailbox]>,
) -> Result<(KindSet, Vec<KindSkipped>, Option<SourceMailbox>)> {
    // Which kinds: asked of the source once per run, with one mailbox, before anything
    // else reads folders (a mail-only app must not fail on a calendar folder listing). A
    // mailbox that cannot answer (no Exchange mailbox after all, a transient failure)
    // hands the question to the next one.
    let candidates: Vec<SourceMailbox> = match (&request.mailboxes, &listed) {
        (MailboxSelection::Named(names), _) => {
            let mut out = Vec::new();
            for n in names.iter().take(PROBES) {
                out.push(source.resolve_mailbox(n).await.map_err(Error::Source)?);
            }
            out
        }
        (MailboxSelection::Tenant { kinds }, Some(all)) => {
            let mut chosen: Vec<&SourceMailbox> = all
                .iter()
                .filter(|m| kind_selected(m.kind, kinds))
                .collect();
            // Mailboxes known to exist first.
            chosen.sort_by_key(|m| m.kind == MailboxKind::Unknown);
            chosen.into_iter().take(PROBES).cloned().collect()
        }
        (MailboxSelection::Tenant { .. }, None) => Vec::new(),
    };
    let mut chosen_kinds = request.item_kinds;
    let mut kinds_skipped = Vec::new();
    if request.item_kinds.beyond_mail() {
        let mut answered = candidates.is_empty();
        let mut last_error = String::new();
        for probe in candidates
            .iter()
            .filter(|p| p.kind != MailboxKind::NoMailbox)
        {
            match resolve_kinds(source, probe, request.item_kinds).await {
                Ok((kinds, skipped)) => {
                    chosen_kinds = kinds;
                    kinds_skipped = skipped;
                    answered = true;
                    break;
                }
                Err(Error::Source(
                    e @ (SourceError::Auth(_) | SourceError::PermissionDenied { .. }),
                )) => return Err(Error::Source(e)),
                Err(e) => last_error = e.to_string(),
            }
        }
        if !answered {
            // Nobody could say: back up mail as before and name the kinds left out.
            let kinds = request.item_kinds;
            chosen_kinds = if kinds.contains(ItemKind::Mail) {
                KindSet::MAIL
            } else {
                KindSet::NONE
            };
            kinds_skipped = kinds
                .iter()
                .filter(|k| !k.is_mail())
                .map(|kind| KindSkipped {
                    kind,
                    permission: format!("a permission check that failed: {last_error}"),
                })
                .collect();
        }
    }
    // The mailbox asked, for the other permission checks of the run.
    let probe = candidates
        .into_iter()
        .find(|p| p.kind != MailboxKind::NoMailbox);
    Ok((chosen_kinds, kinds_skipped, probe))
}

/// Resolve named mailboxes, each asked once for its folders: the directory cannot always
/// tell whether a mailbox exists (no licence plan, no `MailboxSettings.Read`), and a
/// missing permission is found here too, so both are named before anything is written.
async fn named(
    source: &dyn MailSource,
    names: &[String],
    request: &BackupRequest,
    repo: Option<&Repository>,
) -> Result<Vec<SourceMailbox>> {
    let opts = &request.options;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let mailbox = source.resolve_mailbox(name).await.map_err(Error::Source)?;
        if mailbox.kind == MailboxKind::NoMailbox {
            return Err(Error::Source(SourceError::MailboxNotEnabled(
                mailbox.address().to_owned(),
            )));
        }
        // The backup continues from the bookmark unless it reads everything afresh.
        let since = match repo {
            Some(repo) if !opts.full => repo
                .latest_snapshot(&mailbox.id)
                .await
                .ok()
                .flatten()
                .and_then(|s| s.record.folder_bookmark),
            _ => None,
        };
        let listed = source
            .list_folders_since(&mailbox, opts.folder_options, since.as_ref())
            .await
            .map(|l| l.folders);
        match listed {
            Ok(folders) => check_folder_filters(
                &opts.folders,
                folders
                    .iter()
                    .map(|f| (f.path.as_slice(), f.display_name.as_str())),
            )?,
            Err(
                e @ (SourceError::MailboxNotEnabled(_)
                | SourceError::PermissionDenied { .. }
                | SourceError::Auth(_)),
            ) => return Err(Error::Source(e)),
            // Anything else (a transient failure) is met again, and reported for this
            // mailbox, by the backup itself.
            Err(_) => {}
        }
        out.push(mailbox);
    }
    Ok(out)
}

/// Tenant-wide folder filters: each must select a folder in at least one mailbox.
/// Mailboxes are asked for their folders one by one until every filter has matched —
/// usually the first one, for names like `Inbox`; a misspelled filter costs one folder
/// listing per mailbox before it is refused, which is cheap next to a backup.
async fn check_filters_in_tenant(
    source: &dyn MailSource,
    mailboxes: &[SourceMailbox],
    request: &BackupRequest,
) -> Result<()> {
    let opts = &request.options;
    // Every distinct folder seen, by path, for the near matches of an error.
    let mut seen: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
    let mut open: Vec<&String> = opts.folders.iter().collect();
    for mailbox in mailboxes {
        let Ok(folders) = source.list_folders(mailbox, opts.folder_options).await else {
            // No mailbox after all, or a transient failure: the run meets it again.
            continue;
        };
        open.retain(|filter| {
            !folders
                .iter()
                .any(|f| path_selected(&f.path, &f.display_name, filter))
        });
        for f in folders {
            seen.entry(f.path.join("/"))
                .or_insert((f.path, f.display_name));
        }
        if open.is_empty() {
            return Ok(());
        }
    }
    if seen.is_empty() {
        // No mailbox could be asked: nothing to judge the filters by.
        return Ok(());
    }
    let open: Vec<String> = open.into_iter().cloned().collect();
    check_folder_filters(
        &open,
        seen.values().map(|(p, n)| (p.as_slice(), n.as_str())),
    )
}

/// One snapshot's Object Lock outcome.
#[derive(Debug)]
pub struct SnapshotLock {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The retention asked for.
    pub requested: Retention,
    /// What was locked, or why it failed (the snapshot is then readable but not
    /// protected, and the run fails).
    pub result: Result<RetentionReport>,
}

/// The overall result of a backup run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Verdict {
    /// Every mailbox complete (or nothing to back up).
    Complete,
    /// Some mailboxes partial or failed; what was captured was committed.
    Partial,
    /// Every mailbox failed, or a new snapshot could not be locked.
    Failed,
}

/// What a backup run did.
#[derive(Debug)]
pub struct BackupReport {
    /// One outcome per mailbox that was backed up or failed, in plan order.
    pub outcomes: Vec<MailboxOutcome>,
    /// Mailboxes left out: the plan's, and tenant-wide mailboxes that turned out not to
    /// exist.
    pub skipped: Vec<Skipped>,
    /// Object Lock per new snapshot (empty without retention).
    pub locks: Vec<SnapshotLock>,
    /// Kinds not backed up for lack of a permission; asked for by name
    /// (`kinds_explicit`), they make the run partial.
    pub kinds_skipped: Vec<KindSkipped>,
    /// Whether the skipped kinds were asked for by name.
    pub kinds_explicit: bool,
    /// The plan's [`BackupPlan::stream_missing`]: nothing was backed up.
    pub stream_missing: Option<String>,
}

impl BackupReport {
    /// Complete, partial or failed: the exit status of a backup run.
    pub fn verdict(&self) -> Verdict {
        let failed = self.outcomes.iter().filter(|o| o.result.is_err()).count();
        let partial = self
            .outcomes
            .iter()
            .filter(|o| o.result.as_ref().is_ok_and(|s| !s.complete))
            .count();
        if self.locks.iter().any(|l| l.result.is_err()) {
            Verdict::Failed
        } else if self.stream_missing.is_some() {
            Verdict::Partial
        } else if self.outcomes.is_empty() {
            Verdict::Complete
        } else if failed == self.outcomes.len() {
            Verdict::Failed
        } else if failed > 0
            || partial > 0
            || (self.kinds_explicit && !self.kinds_skipped.is_empty())
        {
            Verdict::Partial
        } else {
            Verdict::Complete
        }
    }

    /// The summaries of the mailboxes that committed a snapshot.
    pub fn summaries(&self) -> impl Iterator<Item = &BackupSummary> {
        self.outcomes.iter().filter_map(|o| o.result.as_ref().ok())
    }
}

/// Carry out a plan: back up its mailboxes (at most
/// [`BackupPlan::mailboxes_in_parallel`] at once, sharing one source), then lock the new
/// snapshots. `Err` only when nothing was written (the store cannot enforce the
/// requested lock); everything after that is in the report.
pub async fn execute(
    plan: &BackupPlan,
    repo: &Repository,
    source: Arc<dyn MailSource>,
    clock: Arc<dyn Clock>,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<Cancel>,
) -> Result<BackupReport> {
    if let Some(r) = plan.options.retention {
        retention::ensure_lock_capable(repo, r.mode).await?;
    }
    if let Some(permission) = &plan.stream_missing {
        reporter.report(crate::ports::Event::Warning {
            mailbox: None,
            message: stream_missing_warning(permission),
        });
        return Ok(BackupReport {
            outcomes: Vec::new(),
            skipped: plan.skipped.clone(),
            locks: Vec::new(),
            kinds_skipped: plan.kinds_skipped.clone(),
            kinds_explicit: plan.kinds_explicit,
            stream_missing: plan.stream_missing.clone(),
        });
    }
    if let Some(message) = kinds_skipped_warning(&plan.kinds_skipped) {
        reporter.report(crate::ports::Event::Warning {
            mailbox: None,
            message,
        });
    }
    let outcomes = backup_mailboxes(
        repo,
        source,
        plan.mailboxes.clone(),
        &plan.options,
        plan.mailboxes_in_parallel,
        clock,
        reporter,
        cancel,
    )
    .await;
    let mut skipped = plan.skipped.clone();
    let mut kept = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        let no_mailbox = matches!(
            &o.result,
            Err(Error::Source(SourceError::MailboxNotEnabled(_)))
        );
        if plan.tenant_wide && no_mailbox {
            skipped.push(Skipped {
                mailbox: o.mailbox,
                reason: SkipReason::NoMailbox,
            });
        } else {
            kept.push(o);
        }
    }
    let mut locks = Vec::new();
    if let Some(requested) = plan.options.retention {
        let new: Vec<SnapshotId> = kept
            .iter()
            .filter_map(|o| o.result.as_ref().ok().and_then(|s| s.snapshot))
            .collect();
        for snapshot in new {
            locks.push(SnapshotLock {
                snapshot,
                requested,
                result: retention::apply(repo, snapshot, requested).await,
            });
        }
    }
    Ok(BackupReport {
        outcomes: kept,
        skipped,
        locks,
        kinds_skipped: plan.kinds_skipped.clone(),
        kinds_explicit: plan.kinds_explicit,
        stream_missing: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_are_tried_and_no_mailbox_never_is() {
        use MailboxKind::{Licensed, NoMailbox, Shared, Unknown, Unlicensed};
        let licensed = [Licensed];
        let table = [
            (Licensed, true),
            (Shared, false),
            (Unlicensed, false),
            (Unknown, true),
            (NoMailbox, false),
        ];
        for (kind, expected) in table {
            assert_eq!(kind_selected(kind, &licensed), expected, "{kind:?}");
        }
        assert!(!kind_selected(NoMailbox, &[NoMailbox]));
    }

    fn outcome(result: std::result::Result<bool, ()>) -> MailboxOutcome {
        MailboxOutcome {
            mailbox: "a@contoso.com".into(),
            result: result
                .map(|complete| BackupSummary {
                    mailbox: "a@contoso.com".into(),
                    snapshot: None,
                    complete,
                    downloaded: 0,
                    reused: 0,
                    removed: 0,
                    mail_streams: 0,
                    bytes_downloaded: 0,
                    bytes_stored: 0,
                    resynced_folders: 0,
                    folders: Vec::new(),
                    cancelled: false,
                })
                .map_err(|()| Error::Interrupted),
        }
    }

    #[test]
    fn the_verdict_of_a_run() {
        use Verdict::{Complete, Failed, Partial};
        let report = |results: &[std::result::Result<bool, ()>]| BackupReport {
            outcomes: results.iter().map(|r| outcome(*r)).collect(),
            skipped: Vec::new(),
            locks: Vec::new(),
            kinds_skipped: Vec::new(),
            kinds_explicit: false,
            stream_missing: None,
        };
        let table: [(&[std::result::Result<bool, ()>], Verdict); 6] = [
            (&[], Complete),
            (&[Ok(true), Ok(true)], Complete),
            (&[Ok(true), Ok(false)], Partial),
            (&[Ok(true), Err(())], Partial),
            (&[Err(()), Err(())], Failed),
            (&[Ok(false)], Partial),
        ];
        for (i, (results, expected)) in table.into_iter().enumerate() {
            assert_eq!(report(results).verdict(), expected, "row {i}");
        }
        // A snapshot left unlocked fails the run even when every mailbox is complete.
        let mut r = report(&[Ok(true)]);
        r.locks.push(SnapshotLock {
            snapshot: SnapshotId::random(),
            requested: Retention {
                mode: crate::ports::LockMode::Governance,
                retain_until: chrono::DateTime::UNIX_EPOCH,
            },
            result: Err(Error::Interrupted),
        });
        assert_eq!(r.verdict(), Failed);
        // Refused up front for the export stream's permission: nothing ran, partial.
        let mut r = report(&[]);
        r.stream_missing = Some("MailboxItem.Export.All".into());
        assert_eq!(r.verdict(), Partial);
    }
}
