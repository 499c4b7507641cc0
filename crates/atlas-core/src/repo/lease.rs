//! Leases: at most one writer per mailbox, and the repository-wide prune lock.
//!
//! A lease is a sealed object `locks/<mailbox name>` created with create-if-absent, so of
//! two racing writers exactly one wins. It carries an owner string, a random token, an
//! expiry and the process that holds it ([`HolderProcess`]). The same record, under
//! `prune/lock`, is the maintenance lock of `prune` (see `prune.rs`).
//!
//! # Never stuck after a crash
//!
//! A holder that dies leaves its lease behind. It stops blocking others as soon as it is
//! known to be dead:
//!
//! - **Heartbeat.** Every lease this process holds is registered with the repository
//!   ([`Leases`]); [`Repository::renew_leases`] renews each one once a quarter of its
//!   lifetime has passed, and the binary calls it on a timer. A lease therefore expires
//!   within one lifetime (`leaseSeconds` of the config) after its holder stopped.
//! - **Takeover.** A writer that meets an expired lease removes it and takes its place
//!   (logged as a warning, never silent); so does one that meets a lease whose holder
//!   process is gone — same process table (boot and pid namespace), and no process with
//!   that pid and start time ([`ProcessProbe`]) — without waiting for the expiry.
//! - **Release on every exit path.** Sessions release their lease when they end, with or
//!   without a snapshot and even when the final flush fails (a full disk); whatever a
//!   process still holds when it exits is released by [`Repository::release_leases`].
//!
//! What cannot be decided automatically (a live-looking lease on another machine that the
//! operator knows is dead) is for `atlas unlock --remove-all`.
//!
//! # Races
//!
//! Removing a stale lease is "read, check the token, delete": a writer that took the
//! lease over in between could lose its fresh lease to a second taker that read the old
//! one. Both would then write snapshots of the same mailbox — content-addressed data and
//! two records, no damage — and it needs two takers on one dead lease within the same
//! milliseconds. Renewal is check-then-overwrite: a holder stalled past its whole lifetime
//! (a suspended machine) can overwrite a taker's lease on waking; the taker's next renewal
//! or commit then fails with [`Error::LeaseLost`] instead of committing.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::crypto::ObjectType;
use super::layout::{LOCK_PREFIX, RUN_LOCK_PREFIX};
use super::{Repository, store_key};
use crate::error::{Error, Result};
use crate::model::MailboxId;
use crate::ports::{
    Clock, HolderProcess, Liveness, NoProcesses, ProcessProbe, PutOptions, StoreError,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeaseRecord {
    pub(crate) owner: String,
    pub(crate) token: uuid::Uuid,
    pub(crate) acquired: DateTime<Utc>,
    pub(crate) expires: DateTime<Utc>,
    /// The holding process, when the writer could identify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) process: Option<HolderProcess>,
    /// The mailbox address of a mailbox lease (the key only has its keyed name), for
    /// `atlas unlock` to say what it removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mailbox: Option<String>,
    /// The keyed names (`<mailbox name>`, FORMAT §1) of the mailboxes a tenant-run lease
    /// covers; empty (and not written) in a mailbox lease and the prune lock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) mailbox_names: Vec<String>,
}

/// A lease as reported to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Who holds it (free text chosen by the writer, e.g. `host:pid`).
    pub owner: String,
    /// When it was taken.
    pub acquired: DateTime<Utc>,
    /// When it expires unless renewed.
    pub expires: DateTime<Utc>,
    /// The mailbox, for a mailbox lease written by a version that records it.
    pub mailbox: Option<String>,
    /// The holding process, when the writer recorded it.
    pub process: Option<HolderProcess>,
    /// How many mailboxes a tenant run's lease names (0 for any other lease).
    pub run_mailboxes: usize,
}

impl From<&LeaseRecord> for LeaseInfo {
    fn from(r: &LeaseRecord) -> Self {
        Self {
            owner: r.owner.clone(),
            acquired: r.acquired,
            expires: r.expires,
            mailbox: r.mailbox.clone(),
            process: r.process.clone(),
            run_mailboxes: r.mailbox_names.len(),
        }
    }
}

/// Whether a lease still protects its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Standing {
    /// Not expired, and its holder runs or cannot be checked from here.
    Valid,
    /// Expired: its holder stopped renewing it.
    Expired,
    /// Its holder process is gone (checked on this machine).
    HolderGone,
    /// The object cannot be read (damaged): it protects nothing.
    Unreadable,
}

impl Standing {
    /// Whether the lease may be removed without asking (expired, holder gone, unreadable).
    pub fn is_stale(self) -> bool {
        self != Self::Valid
    }
}

/// One lease or lock found in the repository, for `atlas unlock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    /// Store key (`locks/<mailbox name>` or `prune/lock`).
    pub key: String,
    /// Whether it is the prune lock.
    pub prune: bool,
    /// The record, unless it could not be read.
    pub info: Option<LeaseInfo>,
    /// Whether it still protects its holder.
    pub standing: Standing,
}

/// A lease this process holds, shared between its user (a backup session, prune) and the
/// repository's registry, which renews it ([`Repository::renew_leases`]) and releases it
/// if its user never could ([`Repository::release_leases`]).
#[derive(Debug)]
pub(crate) struct Held {
    key: String,
    record: Mutex<LeaseRecord>,
    /// When it was last written (taken or renewed), by this process's clock.
    renewed: Mutex<DateTime<Utc>>,
    /// Found taken over or removed by someone else: nothing more may be done under it.
    lost: AtomicBool,
}

impl Held {
    pub(crate) fn record(&self) -> LeaseRecord {
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When it was last written (taken or renewed).
    pub(crate) fn renewed(&self) -> DateTime<Utc> {
        *self.renewed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the lease expires unless renewed.
    pub(crate) fn expires(&self) -> DateTime<Utc> {
        self.record().expires
    }
}

/// The leases a repository handle holds, and how it tells whether other holders still
/// run. Part of the repository's shared state.
#[derive(Debug)]
pub(crate) struct Leases {
    probe: RwLock<Arc<dyn ProcessProbe>>,
    held: Mutex<HashMap<String, Arc<Held>>>,
}

impl Default for Leases {
    fn default() -> Self {
        Self {
            probe: RwLock::new(Arc::new(NoProcesses)),
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl Leases {
    fn probe(&self) -> Arc<dyn ProcessProbe> {
        Arc::clone(&self.probe.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn register(&self, held: &Arc<Held>) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(held.key.clone(), Arc::clone(held));
    }

    fn unregister(&self, held: &Held) {
        let mut map = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if map
            .get(&held.key)
            .is_some_and(|h| h.record().token == held.record().token)
        {
            map.remove(&held.key);
        }
    }

    fn all(&self) -> Vec<Arc<Held>> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

impl Repository {
    /// How this repository tells whether the process holding a lease still runs (the
    /// binary passes one that looks at this machine's processes). Without one, a lease
    /// left by a killed process blocks until it expires.
    pub fn set_process_probe(&self, probe: Arc<dyn ProcessProbe>) {
        *self
            .leases()
            .probe
            .write()
            .unwrap_or_else(PoisonError::into_inner) = probe;
    }

    /// Whether both handles are the same opened repository (clones share their state,
    /// leases included).
    pub fn same_handle(&self, other: &Repository) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// How often [`Repository::renew_leases`] should run: a quarter of the lease
    /// lifetime, so a lease survives three missed beats and expires within one lifetime
    /// after its holder stopped.
    pub fn lease_heartbeat_interval(&self) -> std::time::Duration {
        let secs = self
            .config()
            .map_or(60, |c| c.settings.lease_seconds)
            .max(4);
        std::time::Duration::from_secs(secs / 4)
    }

    /// The heartbeat: renew every lease this handle holds that was last written a
    /// quarter of its lifetime ago or more. A lease found taken over is marked lost (its
    /// session cannot commit) and reported as [`Error::LeaseLost`] after the others were
    /// renewed.
    pub async fn renew_leases(&self, clock: &dyn Clock) -> Result<()> {
        let quarter = ttl(self)? / 4;
        let mut first_error = None;
        for held in self.leases().all() {
            if held.lost.load(Ordering::SeqCst) || clock.now() < held.renewed() + quarter {
                continue;
            }
            if let Err(e) = renew(self, &held, clock).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Release every lease this handle still holds (the exit path of a process whose
    /// work was cut short: a dropped session, a stopped command). Returns how many were
    /// released; the first failure is returned after trying them all.
    pub async fn release_leases(&self) -> Result<usize> {
        let mut released = 0;
        let mut first_error = None;
        for held in self.leases().all() {
            match release(self, &held).await {
                Ok(()) => released += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(released), Err)
    }

    /// Every mailbox lease and the prune lock in the repository, with whether each still
    /// protects a holder (for `atlas unlock` and status reports).
    pub async fn list_locks(&self, clock: &dyn Clock) -> Result<Vec<LockEntry>> {
        let mut keys: Vec<(String, bool)> = self
            .store()
            .list(LOCK_PREFIX)
            .await?
            .into_iter()
            .map(|m| (m.key.as_str().to_owned(), false))
            .collect();
        keys.push((super::prune::PRUNE_LOCK_KEY.to_owned(), true));
        let mut out = Vec::new();
        for (key, prune) in keys {
            let (info, standing) = match read_record(self, &key).await {
                Ok(None) => continue,
                Ok(Some(r)) => {
                    let standing = standing(self, &r, clock);
                    (Some(LeaseInfo::from(&r)), standing)
                }
                Err(e) if e.is_integrity_failure() => (None, Standing::Unreadable),
                Err(e) => return Err(e),
            };
            out.push(LockEntry {
                key,
                prune,
                info,
                standing,
            });
        }
        Ok(out)
    }

    /// Remove one lease or lock named by [`Repository::list_locks`]: only a stale one
    /// unless `even_valid` (`atlas unlock --remove-all`, for a holder the operator knows
    /// is dead). Returns what was removed (`None`: already gone).
    pub async fn remove_lock(
        &self,
        key: &str,
        even_valid: bool,
        clock: &dyn Clock,
    ) -> Result<Option<LockEntry>> {
        if !key.starts_with(LOCK_PREFIX) && key != super::prune::PRUNE_LOCK_KEY {
            return Err(Error::invalid(format!("{key} is not a lease or lock")));
        }
        let prune = key == super::prune::PRUNE_LOCK_KEY;
        match read_record(self, key).await {
            Ok(None) => Ok(None),
            Ok(Some(r)) => {
                let standing = standing(self, &r, clock);
                if !standing.is_stale() && !even_valid {
                    return Err(held_error(key, &r));
                }
                if !delete_if_token(self, key, r.token).await? {
                    return Ok(None); // replaced meanwhile: not the lease we judged
                }
                Ok(Some(LockEntry {
                    key: key.to_owned(),
                    prune,
                    info: Some(LeaseInfo::from(&r)),
                    standing,
                }))
            }
            Err(e) if e.is_integrity_failure() => {
                self.store().delete(&store_key(key)?).await?;
                Ok(Some(LockEntry {
                    key: key.to_owned(),
                    prune,
                    info: None,
                    standing: Standing::Unreadable,
                }))
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn lease_key(&self, mailbox: &MailboxId) -> String {
        format!("{LOCK_PREFIX}{}", self.mailbox_key_name(mailbox))
    }
}

fn ttl(repo: &Repository) -> Result<chrono::Duration> {
    let secs = repo.require_config()?.settings.lease_seconds;
    Ok(chrono::Duration::seconds(
        i64::try_from(secs).unwrap_or(i64::MAX / 1000),
    ))
}

pub(crate) async fn read_record(repo: &Repository, key: &str) -> Result<Option<LeaseRecord>> {
    match repo.store().get(&store_key(key)?).await {
        Ok(bytes) => repo.open_json(ObjectType::Lease, key, &bytes).map(Some),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether `r` still protects its holder, as seen from this process now.
pub(crate) fn standing(repo: &Repository, r: &LeaseRecord, clock: &dyn Clock) -> Standing {
    if r.expires <= clock.now() {
        return Standing::Expired;
    }
    let gone = r
        .process
        .as_ref()
        .is_some_and(|p| repo.leases().probe().liveness(p) == Liveness::Gone);
    if gone {
        Standing::HolderGone
    } else {
        Standing::Valid
    }
}

/// The error for a valid lease in the way: a mailbox lease or the prune lock.
pub(crate) fn held_error(key: &str, r: &LeaseRecord) -> Error {
    if key == super::prune::PRUNE_LOCK_KEY {
        return Error::MaintenanceRunning {
            owner: r.owner.clone(),
            expires: r.expires,
        };
    }
    Error::LeaseHeld {
        owner: r.owner.clone(),
        expires: r.expires,
    }
}

/// Delete the lease at `key` if it still carries `token`; `false` when it is gone or was
/// replaced by another holder's.
async fn delete_if_token(repo: &Repository, key: &str, token: uuid::Uuid) -> Result<bool> {
    match read_record(repo, key).await {
        Ok(Some(r)) if r.token == token => match repo.store().delete(&store_key(key)?).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        },
        Ok(_) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Remove the lease at `key` if it is stale, with a warning naming whose it was and why.
/// `Ok(true)`: the way is free (removed, or already gone); `Ok(false)`: it is valid.
pub(crate) async fn clear_if_stale(
    repo: &Repository,
    key: &str,
    clock: &dyn Clock,
) -> Result<bool> {
    match read_record(repo, key).await {
        Ok(None) => Ok(true),
        Ok(Some(r)) => {
            let standing = standing(repo, &r, clock);
            if !standing.is_stale() {
                return Ok(false);
            }
            if delete_if_token(repo, key, r.token).await? {
                let why = match standing {
                    Standing::HolderGone => "its process is gone".to_owned(),
                    _ => format!(
                        "it expired at {} (its holder stopped renewing it)",
                        r.expires
                    ),
                };
                tracing::warn!(
                    "removed the stale {} of {}: {why}",
                    describe(key, &r),
                    r.owner
                );
            }
            Ok(true)
        }
        // An unreadable lease protects nothing.
        Err(e) if e.is_integrity_failure() => {
            tracing::warn!("removed the unreadable lease object {key}");
            match repo.store().delete(&store_key(key)?).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => Ok(true),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e),
    }
}

fn describe(key: &str, r: &LeaseRecord) -> String {
    match &r.mailbox {
        Some(m) => format!("lease of mailbox {m}"),
        None if !r.mailbox_names.is_empty() => {
            format!("lease of a run of {} mailboxes", r.mailbox_names.len())
        }
        None if key == super::prune::PRUNE_LOCK_KEY => "prune lock".to_owned(),
        None => format!("lease {key}"),
    }
}

/// Take the lease of `mailbox`; see [`acquire_key`].
pub(crate) async fn acquire(
    repo: &Repository,
    mailbox: &MailboxId,
    owner: &str,
    clock: &dyn Clock,
) -> Result<Arc<Held>> {
    let key = repo.lease_key(mailbox);
    let held = acquire_key(repo, &key, owner, Some(mailbox.address()), clock).await?;
    // Checked *after* our lease exists, while a tenant run creates its lease before it
    // checks ours (`claim`): whichever of the two comes second sees the other.
    match run_covering(repo, &repo.mailbox_key_name(mailbox), clock).await {
        Ok(None) => Ok(held),
        Ok(Some(e)) | Err(e) => {
            let _ = release(repo, &held).await;
            Err(e)
        }
    }
}

/// Create the lease object at `key` (create-if-absent) and register it for the heartbeat.
/// A stale lease in the way (expired, holder gone, unreadable) is removed and taken over;
/// a valid one is [`Error::LeaseHeld`] (or [`Error::MaintenanceRunning`] for the prune
/// lock).
pub(crate) async fn acquire_key(
    repo: &Repository,
    key: &str,
    owner: &str,
    mailbox: Option<&str>,
    clock: &dyn Clock,
) -> Result<Arc<Held>> {
    acquire_covering(repo, key, owner, mailbox, Vec::new(), clock).await
}

/// [`acquire_key`] with the mailbox names a tenant-run lease covers.
async fn acquire_covering(
    repo: &Repository,
    key: &str,
    owner: &str,
    mailbox: Option<&str>,
    mailbox_names: Vec<String>,
    clock: &dyn Clock,
) -> Result<Arc<Held>> {
    let ttl = ttl(repo)?;
    let process = repo.leases().probe().current();
    // A takeover races other takers; a few rounds settle it.
    for _ in 0..4 {
        let now = clock.now();
        let rec = LeaseRecord {
            owner: owner.to_owned(),
            token: uuid::Uuid::new_v4(),
            acquired: now,
            expires: now + ttl,
            process: process.clone(),
            mailbox: mailbox.map(str::to_owned),
            mailbox_names: mailbox_names.clone(),
        };
        let sealed = repo.seal_json(ObjectType::Lease, key, &rec)?;
        match repo
            .store()
            .put(&store_key(key)?, sealed, PutOptions::CREATE)
            .await
        {
            Ok(()) => {
                let held = Arc::new(Held {
                    key: key.to_owned(),
                    record: Mutex::new(rec),
                    renewed: Mutex::new(now),
                    lost: AtomicBool::new(false),
                });
                repo.leases().register(&held);
                return Ok(held);
            }
            Err(StoreError::AlreadyExists { .. }) => {
                if !clear_if_stale(repo, key, clock).await? {
                    return match read_record(repo, key).await? {
                        Some(other) => Err(held_error(key, &other)),
                        None => continue, // released meanwhile
                    };
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::LeaseHeld {
        owner: "other writers taking it at the same moment".into(),
        expires: clock.now(),
    })
}

/// Fail with [`Error::LeaseLost`] unless the stored lease is still ours.
pub(crate) async fn check_held(repo: &Repository, held: &Held) -> Result<()> {
    let ours = held.record().token;
    let lost = |owner: String| {
        held.lost.store(true, Ordering::SeqCst);
        Err(Error::LeaseLost { owner })
    };
    match read_record(repo, &held.key).await? {
        Some(r) if r.token == ours => Ok(()),
        Some(r) => lost(r.owner),
        None => lost("nobody".into()),
    }
}

/// Extend the lease by a whole lifetime from now.
pub(crate) async fn renew(repo: &Repository, held: &Held, clock: &dyn Clock) -> Result<()> {
    check_held(repo, held).await?;
    let now = clock.now();
    let mut rec = held.record();
    rec.expires = now + ttl(repo)?;
    let sealed = repo.seal_json(ObjectType::Lease, &held.key, &rec)?;
    repo.store()
        .put(&store_key(&held.key)?, sealed, PutOptions::OVERWRITE)
        .await?;
    *held.record.lock().unwrap_or_else(PoisonError::into_inner) = rec;
    *held.renewed.lock().unwrap_or_else(PoisonError::into_inner) = now;
    Ok(())
}

/// Delete the lease if it is still ours, and forget it. A lease someone else took over is
/// left alone ([`Error::LeaseLost`]).
pub(crate) async fn release(repo: &Repository, held: &Held) -> Result<()> {
    let checked = check_held(repo, held).await;
    let result = match checked {
        Ok(()) => match repo.store().delete(&store_key(&held.key)?).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e),
    };
    // Forgotten either way unless the store could not be reached: then the exit path
    // (`release_leases`) tries again.
    if !matches!(&result, Err(Error::Store(_))) {
        repo.leases().unregister(held);
    }
    result
}

/// The current lease of a mailbox, if any.
pub(crate) async fn read(repo: &Repository, mailbox: &MailboxId) -> Result<Option<LeaseInfo>> {
    Ok(read_record(repo, &repo.lease_key(mailbox))
        .await?
        .as_ref()
        .map(LeaseInfo::from))
}

/// Remove a stale lease; a valid one is refused with [`Error::LeaseHeld`]. Returns the
/// lease removed.
pub(crate) async fn break_stale_key(
    repo: &Repository,
    key: &str,
    clock: &dyn Clock,
) -> Result<Option<LeaseInfo>> {
    Ok(repo
        .remove_lock(key, false, clock)
        .await?
        .and_then(|entry| entry.info))
}

/// The lease of one tenant run: one object (`locks/run-<32 hex>`) naming every mailbox
/// the run may back up, instead of one lease object per mailbox (issue 13: at 300
/// messages per mailbox those were a third of the objects a run wrote).
///
/// It protects what a mailbox lease protects, for each mailbox it names:
///
/// - **Prune** lists `locks/` after creating its lock and stops at any valid lease, this
///   one included (it lives under the same prefix), so no prune overlaps the run.
/// - **A mailbox lease** (`delete -m`, another single-mailbox writer, also from builds
///   that predate run leases) is checked by each mailbox session when it begins
///   (`claim`); a new writer taking a mailbox lease checks the run leases after taking
///   it (`acquire`): whichever comes second sees the other.
/// - **Another run** naming the same mailbox: each run lists the run leases right after
///   creating its own and yields to the ones it saw (`RunLease::earlier`) for the
///   mailboxes they name, for as long as they stay valid. Of two runs, the one created
///   second always sees the first, so they never both write a mailbox; two runs created
///   at the same moment both yield (that mailbox fails with [`Error::LeaseHeld`] in both,
///   as it would for a mailbox lease in the way).
///
/// It is renewed by the heartbeat like every lease, and a commit checks it is still ours
/// right before writing the snapshot record, exactly as with a mailbox lease.
#[derive(Debug)]
pub struct RunLease {
    pub(crate) held: Arc<Held>,
    names: BTreeSet<String>,
    /// Run leases that existed when this one was created, with the mailboxes they name.
    earlier: Vec<(String, BTreeSet<String>)>,
}

impl RunLease {
    /// Whether the run covers `name` (a keyed mailbox name).
    fn covers(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Delete the lease (the run is over): see `lease::release`.
    pub async fn release(&self, repo: &Repository) -> Result<()> {
        release(repo, &self.held).await
    }
}

/// Take the lease of a tenant run covering `mailboxes`; see [`RunLease`].
pub(crate) async fn acquire_run(
    repo: &Repository,
    mailboxes: &[MailboxId],
    owner: &str,
    clock: &dyn Clock,
) -> Result<RunLease> {
    let names: BTreeSet<String> = mailboxes.iter().map(|m| repo.mailbox_key_name(m)).collect();
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    let key = format!("{RUN_LOCK_PREFIX}{}", hex::encode(id));
    // A run of one mailbox (`backup -m`) also names it by address, as a mailbox lease
    // does, so `atlas unlock` can say whose it is.
    let single = match mailboxes {
        [one] => Some(one.address()),
        _ => None,
    };
    let held = acquire_covering(
        repo,
        &key,
        owner,
        single,
        names.iter().cloned().collect(),
        clock,
    )
    .await?;
    let earlier = async {
        let mut earlier = Vec::new();
        for (other, names) in run_leases(repo, clock).await? {
            if other != key {
                earlier.push((other, names));
            }
        }
        Ok::<_, Error>(earlier)
    }
    .await;
    match earlier {
        Ok(earlier) => Ok(RunLease {
            held,
            names,
            earlier,
        }),
        Err(e) => {
            let _ = release(repo, &held).await;
            Err(e)
        }
    }
}

/// The valid run leases in the repository, with the mailboxes each names; stale ones are
/// removed on the way (as prune does).
async fn run_leases(
    repo: &Repository,
    clock: &dyn Clock,
) -> Result<Vec<(String, BTreeSet<String>)>> {
    let mut out = Vec::new();
    for meta in repo.store().list(LOCK_PREFIX).await? {
        let key = meta.key.as_str();
        if !key.starts_with(RUN_LOCK_PREFIX) || clear_if_stale(repo, key, clock).await? {
            continue;
        }
        if let Some(r) = read_record(repo, key).await? {
            out.push((key.to_owned(), r.mailbox_names.into_iter().collect()));
        }
    }
    Ok(out)
}

/// For a writer that has just taken the mailbox lease of `name`: the error to stop with
/// if a valid run lease names that mailbox.
async fn run_covering(repo: &Repository, name: &str, clock: &dyn Clock) -> Result<Option<Error>> {
    for (key, names) in run_leases(repo, clock).await? {
        if names.contains(name) {
            if let Some(r) = read_record(repo, &key).await? {
                return Ok(Some(held_error(&key, &r)));
            }
        }
    }
    Ok(None)
}

/// Before a session of `run` writes `mailbox`: fail with [`Error::LeaseHeld`] while a
/// valid mailbox lease of it exists (a stale one is removed) or an earlier run that
/// names it still holds its lease. Reads, never writes: the run's lease already names it.
pub(crate) async fn claim(
    repo: &Repository,
    run: &RunLease,
    mailbox: &MailboxId,
    clock: &dyn Clock,
) -> Result<()> {
    let name = repo.mailbox_key_name(mailbox);
    if !run.covers(&name) {
        return Err(Error::invalid(
            "the mailbox is not one of those the run's lease covers",
        ));
    }
    let key = repo.lease_key(mailbox);
    if !clear_if_stale(repo, &key, clock).await? {
        if let Some(r) = read_record(repo, &key).await? {
            return Err(held_error(&key, &r));
        }
    }
    for (other, names) in &run.earlier {
        if names.contains(&name) && !clear_if_stale(repo, other, clock).await? {
            if let Some(r) = read_record(repo, other).await? {
                return Err(held_error(other, &r));
            }
        }
    }
    Ok(())
}
