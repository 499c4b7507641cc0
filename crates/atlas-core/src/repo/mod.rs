//! The encrypted, deduplicated repository.
//!
//! Layers, bottom up:
//!
//! - [`keyfile`]: the passphrase-wrapped tenant data key (`_meta/dek.enc`), compatible with
//!   TypeScript Atlas 1.3 (and its pre-1.3 60-byte blob).
//! - `crypto`: the plaintext frame (zstd when smaller, SHA-256 of the plaintext),
//!   sealed named objects and blobs (AES-256-GCM, associated data binding each to its name
//!   and type), keyed content ids.
//! - [`pack`] and [`index`]: blobs packed per run (one mailbox's, or a tenant run's
//!   mailboxes together through one [`PackWriter`]) with a self-describing table; index
//!   files map content ids to pack locations; dedup asks the index (tenant-wide).
//! - [`Repository`] and [`BackupSession`]: keys, config, snapshots, leases. The
//!   repository's methods live in files named after their jobs: `keys` (open, create,
//!   passphrase), `layout` (every store key name — private to this module), `sealed`
//!   (sealed JSON records), `index_cache`, `blobs` (reads), `snapshots` (listing).
//! - [`prune`]: garbage collection, repacking and index compaction, excluded from running
//!   alongside backups by a repository lock.
//!
//! Write order is data (packs) → index → snapshot record, so an interrupted run leaves at
//! most unreferenced data, never a record that points at nothing. `docs/FORMAT.md`
//! describes every object byte by byte.

mod blobs;
pub mod budget;
mod cache;
mod chunks;
mod copy;
mod crypto;
pub mod index;
mod index_cache;
mod item_list;
pub mod keyfile;
mod keys;
mod layout;
pub(crate) mod lease;
pub mod pack;
pub mod prune;
mod purge;
mod repair;
pub mod retention;
mod sealed;
mod secret;
mod session;
mod snapshots;
mod stream;
mod verify;
mod writer;

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use blobs::PackData;
pub use budget::{DEFAULT_MEMORY_BUDGET, Grant, MemoryBudget};
pub(crate) use copy::{ObjectCopier, read_replica_marker, write_replica_marker};
pub use crypto::{ContentCheck, decrypt_v1_object};
pub use index_cache::IndexRefresh;
pub use item_list::{
    FolderList, ItemListReader, MAX_PIECE_ITEMS, PIECED_FORMAT_VERSION, StoredItems,
};
pub use keyfile::{KdfChoice, KeyBlobFormat};
pub use keys::{RootDamage, RootObject, has_config, has_key_blob};
pub use layout::{
    CONFIG_KEY, CONFIG_SPARE_KEY, KEY_BLOB_KEY, KEY_SPARE_KEY, REPLICA_MARKER_KEY,
    REPLICATION_STATUS_PREFIX,
};
pub(crate) use layout::{LOCK_PREFIX, parse_snapshot_key, snapshot_key, store_key};
pub use lease::{LeaseInfo, LockEntry, RunLease, Standing};
pub use pack::{PackEntry, PackId};
pub use prune::{PruneOptions, PruneSummary};
pub use purge::Removal;
pub use repair::{DroppedBlob, StorageRepair};
pub use retention::RetentionReport;
pub use secret::{DataKey, Passphrase};
pub use session::{BackupSession, BlobWriter, SessionStats, StoredBlob};
pub use stream::BlobReader;
pub use verify::{VerifyProblem, VerifyReport};
pub use writer::PackWriter;

use crate::error::{Error, Result};
use crate::model::{MailboxId, SnapshotId, SnapshotRecord};
use crate::ports::{BlobStore, Clock};
use index::Index;
pub(crate) use secret::RepoKeys;

/// The repository format this build writes into a new repository's config, and the
/// highest it reads. Version 1 is the TypeScript Atlas layout (`data/`, `manifests/` …),
/// which is read, never written; version 3 adds items of kinds other than mail (calendar,
/// contacts, tasks, notes, configuration), whose records version 2 already described;
/// version 4 drops the plaintext SHA-256 of blobs (frames, chunk lists, records'
/// `mimeSha256`): the content id is the one hash of each piece of content; version 5
/// drops the mailbox records ([`SNAPSHOTS_NAME_MAILBOXES_FORMAT_VERSION`]).
pub const FORMAT_VERSION: u32 = 5;

/// The first format without mailbox records (`mailboxes/<name>`, docs/FORMAT.md §5.2): a
/// mailbox's snapshot records name it (`mailbox`, the same JSON the mailbox record held),
/// so listing mailboxes opens each mailbox's newest snapshot record instead, and a first
/// backup writes one object less per mailbox — the 3.3 objects per 1,000 messages that
/// kept a first full backup of 20 × 300 above SPEC §9's 10 (docs/BENCHMARKS.md, issue 13).
/// A repository created before keeps its records, and writers keep adding them, so the
/// builds that wrote it (whose verify and replication expect them) keep reading it.
pub const SNAPSHOTS_NAME_MAILBOXES_FORMAT_VERSION: u32 = 5;

/// The first format whose blobs and records keep no plaintext SHA-256
/// (docs/FORMAT.md §4.1). Repositories keep the format they were created with: a session
/// writes checksums into a repository created before it, so the builds that wrote it
/// keep reading what newer ones add.
pub const SINGLE_HASH_FORMAT_VERSION: u32 = 4;

/// The version a snapshot record of a repository before format 4 carries when it holds
/// items of other kinds than mail.
pub const OTHER_KINDS_FORMAT_VERSION: u32 = 3;

/// The version a snapshot record of a repository before format 4 carries when it holds
/// only mail: such snapshots are exactly what version 2 wrote, so readers of version 2
/// read them as before.
pub const MAIL_ONLY_FORMAT_VERSION: u32 = 2;

/// What a blob is. Part of its content id and of its associated data, so the same bytes
/// stored as two kinds are two blobs, and a blob cannot be read as another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobKind {
    /// Raw RFC 5322 MIME of a message.
    Mime = 1,
    /// An attachment's bytes (when stored apart from the MIME).
    Attachment = 2,
    /// A folder item list (`Vec<MessageMeta>`, JSON).
    FolderItems = 3,
    /// Other structured metadata (JSON).
    Metadata = 4,
    /// One chunk of a large item (internal).
    Chunk = 5,
    /// The list of chunks of a large item (internal; indexed under the whole item's id).
    ChunkList = 6,
}

impl BlobKind {
    /// Every kind, for tests and decoders.
    pub const ALL: [Self; 6] = [
        Self::Mime,
        Self::Attachment,
        Self::FolderItems,
        Self::Metadata,
        Self::Chunk,
        Self::ChunkList,
    ];

    /// Decode the stored byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

/// Tunables fixed when a repository is created (stored in its config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoSettings {
    /// A pack is sealed when adding the next blob would exceed this many bytes.
    pub pack_target_size: u64,
    /// Items larger than this are chunked.
    pub chunk_threshold: u64,
    /// Chunk size for large items.
    pub chunk_size: u64,
    /// How long a lease (mailbox or prune lock) lasts unless renewed. Holders renew every
    /// quarter of it, so this is also about how long a lease outlives a holder that died
    /// on another machine (one on the same machine is noticed at once).
    pub lease_seconds: u64,
}

impl Default for RepoSettings {
    fn default() -> Self {
        Self {
            pack_target_size: 16 << 20,
            chunk_threshold: 8 << 20,
            chunk_size: 4 << 20,
            // Two minutes (it was 15): long enough for a heartbeat every 30 s to ride out
            // a slow store, short enough that a crash elsewhere blocks nobody for long.
            lease_seconds: 120,
        }
    }
}

impl RepoSettings {
    fn check(&self) -> Result<()> {
        let ok = (4 << 10..=1 << 30).contains(&self.pack_target_size)
            && (1 << 10..=64 << 20).contains(&self.chunk_size)
            && (self.chunk_size..=64 << 20).contains(&self.chunk_threshold)
            && self.lease_seconds >= 10;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "settings out of range: pack target 4 KiB..1 GiB, chunk size 1 KiB..64 MiB, chunk size <= threshold <= 64 MiB, lease >= 10 s",
            ))
        }
    }
}

/// The encrypted repository config (`config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoConfig {
    /// Repository format version.
    pub format_version: u32,
    /// Random id of this repository.
    pub repo_id: uuid::Uuid,
    /// Tool and version that created it (informational).
    #[serde(default)]
    pub created_by: String,
    /// Tunables.
    pub settings: RepoSettings,
}

/// A snapshot as listed from key names only (no decryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Snapshot id.
    pub id: SnapshotId,
    /// Start time of the run (millisecond precision).
    pub started: DateTime<Utc>,
}

/// A loaded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Snapshot id.
    pub id: SnapshotId,
    /// The record.
    pub record: SnapshotRecord,
}

/// Process-wide state of one opened repository.
#[derive(Debug)]
struct Inner {
    store: Arc<dyn BlobStore>,
    tenant: String,
    keys: RwLock<Arc<RepoKeys>>,
    config: RwLock<Option<RepoConfig>>,
    index: RwLock<Index>,
    /// Root objects found missing or damaged at open (see `keys`).
    root_damage: RwLock<Vec<RootDamage>>,
    /// Leases this handle holds, for the heartbeat and the exit path (see `lease`).
    leases: lease::Leases,
    /// The memory budget every backup session of this handle draws from (a runtime
    /// setting, not stored: one per tenant run).
    budget: RwLock<MemoryBudget>,
}

/// An opened repository. Cheap to clone (shared state: keys, config, index cache).
#[derive(Debug, Clone)]
pub struct Repository {
    inner: Arc<Inner>,
}

impl Repository {
    fn from_parts(store: Arc<dyn BlobStore>, tenant: &str, keys: Arc<RepoKeys>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                tenant: tenant.to_owned(),
                keys: RwLock::new(keys),
                config: RwLock::new(None),
                index: RwLock::new(Index::default()),
                root_damage: RwLock::new(Vec::new()),
                leases: lease::Leases::default(),
                budget: RwLock::new(MemoryBudget::default()),
            }),
        }
    }

    pub(in crate::repo) fn keys(&self) -> Arc<RepoKeys> {
        Arc::clone(
            &self
                .inner
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub(in crate::repo) fn store(&self) -> &Arc<dyn BlobStore> {
        &self.inner.store
    }

    /// The tenant id the key was opened for.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The repository config, `None` for a TypeScript Atlas bucket without one.
    pub fn config(&self) -> Option<RepoConfig> {
        self.inner
            .config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn require_config(&self) -> Result<RepoConfig> {
        self.config().ok_or_else(|| Error::NotInitialized {
            store: self.inner.store.describe(),
        })
    }

    /// Whether this repository keeps a mailbox record per mailbox (formats before
    /// [`SNAPSHOTS_NAME_MAILBOXES_FORMAT_VERSION`]). Without a config (a TypeScript
    /// Atlas bucket) readers look where they always did.
    pub fn keeps_mailbox_records(&self) -> bool {
        self.config()
            .is_none_or(|c| c.format_version < SNAPSHOTS_NAME_MAILBOXES_FORMAT_VERSION)
    }

    /// The `formatVersion` a snapshot record written now carries: 4 or later in a
    /// repository of format 4 or later (the repository's format) (its records have no `mimeSha256`, which readers of earlier formats
    /// need); before that 3 when the snapshot holds items of other kinds than mail, else 2.
    pub fn snapshot_format_version(&self, other_kinds: bool) -> Result<u32> {
        let format = self.require_config()?.format_version;
        Ok(if format >= SINGLE_HASH_FORMAT_VERSION {
            format
        } else if other_kinds {
            OTHER_KINDS_FORMAT_VERSION
        } else {
            MAIL_ONLY_FORMAT_VERSION
        })
    }

    /// The memory budget backup sessions of this handle (and its clones) draw from: packs
    /// being filled and uploaded, downloads in flight ([`MemoryBudget`]).
    pub fn memory_budget(&self) -> MemoryBudget {
        self.inner
            .budget
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replace the memory budget (`ATLAS_MEMORY_BUDGET`); sessions begun afterwards draw
    /// from the new one. Set it before a run starts.
    pub fn set_memory_budget(&self, bytes: u64) {
        *self
            .inner
            .budget
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = MemoryBudget::new(bytes);
    }

    /// The data key, for reading TypeScript Atlas v1 objects with [`decrypt_v1_object`].
    pub fn data_key(&self) -> DataKey {
        self.keys().data.clone()
    }

    // ----- leases, sessions, verify ----------------------------------------------------------

    /// Start a backup run of one mailbox: takes the mailbox lease (create-if-absent).
    /// Fails with [`Error::LeaseHeld`] while another writer's lease is valid; a stale one
    /// (expired, or its process gone) is taken over (see `lease.rs`).
    pub async fn begin_backup(
        &self,
        mailbox: &MailboxId,
        owner: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<BackupSession> {
        session::BackupSession::begin(self.clone(), mailbox.clone(), owner, clock, None, None).await
    }

    /// Take the lease of a tenant run that may back up `mailboxes`: one lease object for
    /// the run instead of one per mailbox (see [`RunLease`]). Sessions begun with it
    /// ([`Self::begin_backup_in`]) check that no other writer holds their mailbox and work
    /// under it; the run releases it when it ends ([`RunLease::release`]).
    pub async fn begin_run(
        &self,
        mailboxes: &[MailboxId],
        owner: &str,
        clock: &dyn Clock,
    ) -> Result<RunLease> {
        lease::acquire_run(self, mailboxes, owner, clock).await
    }

    /// A pack writer for the sessions of one tenant run to share ([`Self::begin_backup_in`]):
    /// their blobs fill the same packs, and index files are written per group of commits
    /// instead of per mailbox. Every session begun in it must be driven to its end
    /// (commit, release or drop) concurrently with the others: a session that finishes
    /// may wait for the shared pack to fill or for the others to finish too.
    pub fn pack_writer(&self) -> Result<PackWriter> {
        PackWriter::new(self)
    }

    /// [`Self::begin_backup`], with the blobs going to a shared `writer`, and under the
    /// tenant run's lease when `run` is given (instead of the mailbox's own).
    pub async fn begin_backup_in(
        &self,
        mailbox: &MailboxId,
        owner: &str,
        clock: Arc<dyn Clock>,
        writer: &PackWriter,
        run: Option<&RunLease>,
    ) -> Result<BackupSession> {
        session::BackupSession::begin(
            self.clone(),
            mailbox.clone(),
            owner,
            clock,
            Some(writer),
            run,
        )
        .await
    }

    /// The current lease of a mailbox, if any.
    pub async fn lease_info(&self, mailbox: &MailboxId) -> Result<Option<LeaseInfo>> {
        lease::read(self, mailbox).await
    }

    /// Remove a stale lease (expired, its process gone, or unreadable); refuses a lease
    /// that is still valid ([`Error::LeaseHeld`]). Returns the lease that was removed.
    /// Writers take stale leases over by themselves; this is for tools and tests.
    pub async fn break_lease(
        &self,
        mailbox: &MailboxId,
        clock: &dyn Clock,
    ) -> Result<Option<LeaseInfo>> {
        lease::break_stale_key(self, &self.lease_key(mailbox), clock).await
    }

    pub(crate) fn leases(&self) -> &lease::Leases {
        &self.inner.leases
    }

    /// Verify a snapshot: every folder list and message it refers to, and every pack they
    /// live in, is read and checked (tags, checksums, content ids). Damage is collected in
    /// the report; `Err` only when the record itself cannot be read.
    pub async fn verify_snapshot(&self, id: SnapshotId) -> Result<VerifyReport> {
        verify::verify_snapshot(self, id).await
    }

    /// Verify several snapshots, reading and decrypting each pack they share only once
    /// (reports are in the order of `ids`; `Err` only when a record cannot be read).
    pub async fn verify_snapshots(&self, ids: &[SnapshotId]) -> Result<Vec<VerifyReport>> {
        let mut checked = verify::CheckedPacks::new();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(verify::verify_snapshot_with(self, *id, &mut checked).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_kind_bytes_round_trip() {
        for k in BlobKind::ALL {
            assert_eq!(BlobKind::from_u8(k as u8), Some(k));
        }
        assert_eq!(BlobKind::from_u8(0), None);
    }
}
