//! A backup session: the single writer of one mailbox run.
//!
//! Blobs are encrypted as they arrive (small ones on the storing task, larger ones on the
//! blocking pool: `INLINE_MAX`) and handed to a pack writer (`writer.rs`): the
//! session's own, or the one the sessions of a tenant run share. A pack is sealed and
//! uploaded (create-if-absent) when the next blob would push it past the target size. The
//! session notes every pack its content depends on (what it wrote, and what it
//! deduplicated against while still in the writer); `flush` returns once each of them is
//! stored and named by a written index file, and only then do the entries join the shared
//! in-process index. `commit` flushes, writes the snapshot record and releases
//! the lease: data → index → record, whoever else's blobs share the packs.
//!
//! A session on its own takes the mailbox's lease; a session of a tenant run works under
//! the run's lease ([`RunLease`]), which it only reads (`lease::claim`) and never
//! releases. The mailbox record (formats before 5) is written right before the first
//! snapshot record of the mailbox, and only when it is absent (a HEAD, not a write): an
//! incremental writes no object for it.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::budget::MemoryBudget;
use super::chunks::ChunkList;
use super::crypto::{self, FrameChecksum, ObjectType};
use super::item_list::{self, PieceRef, StoredItems};
use super::lease::{self, Held, RunLease};
use super::writer::{Known, Member, PackWriter, Written};
use super::{BlobKind, RepoSettings, Repository, snapshot_key, store_key};
use crate::error::{Error, Result};
use crate::model::{ContentId, MailboxId, MessageMeta, SnapshotId, SnapshotRecord};
use crate::ports::{Clock, PutOptions, Retention, StoreError};

/// Counters of one session, for progress and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Blobs encrypted and added to packs.
    pub blobs_written: u64,
    /// `put_blob` calls answered from the index (nothing written).
    pub blobs_deduplicated: u64,
    /// Plaintext bytes of written blobs.
    pub bytes_plain: u64,
    /// Encrypted bytes of written blobs (after compression).
    pub bytes_stored: u64,
    /// Packs uploaded by this session's calls (in a tenant run a pack may also hold
    /// other sessions' blobs, and this session's blobs may leave in a pack another
    /// session uploads).
    pub packs_written: u64,
    /// Index files uploaded by this session's calls (same caveat).
    pub index_files_written: u64,
}

/// What storing one piece of content produced: everything a caller records about it, so
/// no caller hashes content itself or diffs [`SessionStats`] to learn what a put cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    /// Content id (keyed hash of kind and content): what records reference.
    pub id: ContentId,
    /// Length of the content (plaintext).
    pub plain_len: u64,
    /// Encrypted bytes this call added to the repository: 0 when the content was already
    /// stored (deduplicated); for chunked content, the new chunks plus the chunk list.
    pub stored_len: u64,
    /// SHA-256 of the content, only in repositories before format 4: the plaintext
    /// checksum their records keep (`mimeSha256`), computed in the same pass as the
    /// content id and reused as the frame checksum. Format 4 computes the content id alone
    /// (it is a keyed SHA-256 of the same bytes, and readers recompute it).
    pub sha256: Option<[u8; 32]>,
}

impl StoredBlob {
    /// [`StoredBlob::sha256`] as lower-case hex, as records store it; empty when the
    /// repository's format keeps no plaintext checksum (records then omit the field).
    pub fn sha256_hex(&self) -> String {
        self.sha256.map(hex::encode).unwrap_or_default()
    }

    /// Whether the content was already in the repository (nothing written).
    pub fn is_deduplicated(&self) -> bool {
        self.stored_len == 0
    }
}

/// Content up to this size is hashed *and sealed* (compressed, encrypted) on the task that
/// stores it instead of on a blocking thread. Handing bytes to a blocking thread and waking
/// the task again costs more CPU than the work itself for most mail: the kernel's thread
/// wake-ups were ~0.07 ms per message with two hand-offs per message (hash, then seal;
/// docs/BENCHMARKS.md, the 2026-12-05 profile). At this size the work stays well inside
/// what a task may run between awaits (~0.5 ms): SHA-NI takes ~35 µs for 64 KiB, zstd
/// level 1 ~3 ns per byte (~0.2 ms) and AES-GCM ~0.2 ns per byte. Most mail is below it;
/// larger content (and every chunk) still goes to the blocking pool, so a 150 MB message
/// never stalls the runtime.
const INLINE_MAX: usize = 64 << 10;

/// Run CPU-bound `work` over `len` bytes: right here on the calling task when `len` is
/// at most [`INLINE_MAX`], on a blocking thread otherwise.
async fn cpu_work<T, F>(len: usize, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if len <= INLINE_MAX {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::task(&e))
}

/// The writer of one mailbox run; see the module docs. Dropping it without `commit` or
/// `release` leaves its lease registered with the repository, which releases it on the
/// process's exit path ([`Repository::release_leases`]) or, if the process dies, lets it
/// expire (sealed data stays as orphans or indexed data).
#[derive(Debug)]
pub struct BackupSession {
    repo: Repository,
    mailbox: MailboxId,
    clock: Arc<dyn Clock>,
    lease: Arc<Held>,
    /// Whether `lease` is this session's own mailbox lease (released when it ends) rather
    /// than its tenant run's (released by the run).
    own_lease: bool,
    settings: RepoSettings,
    /// Whether this repository's format keeps a plaintext SHA-256 per blob (frames, chunk
    /// lists, records): before format 4. A repository keeps the format it was created
    /// with, so builds that wrote it keep reading what this session adds.
    sha256_checksums: bool,
    /// Where sealed blobs go (this session's own writer, or the tenant run's).
    writer: PackWriter,
    /// Counted as live by `writer` until the session is gone.
    _member: Member,
    budget: MemoryBudget,
    /// Packs of `writer` that content of this session sits in and that are not known to
    /// be stored and indexed yet: what `flush` waits for.
    needs: BTreeSet<u64>,
    stats: SessionStats,
    /// Object Lock retention for everything this session writes (packs, index files, the
    /// snapshot record), so new data is protected from the moment it lands — not only once
    /// `retention::apply` walks the committed snapshot (which still extends reused data).
    retention: Option<Retention>,
}

impl BackupSession {
    pub(crate) async fn begin(
        repo: Repository,
        mailbox: MailboxId,
        owner: &str,
        clock: Arc<dyn Clock>,
        writer: Option<&PackWriter>,
        run: Option<&RunLease>,
    ) -> Result<Self> {
        let config = repo.require_config()?;
        let settings = config.settings;
        let sha256_checksums = config.format_version < super::SINGLE_HASH_FORMAT_VERSION;
        let writer = match writer {
            Some(w) => w.clone(),
            None => PackWriter::new(&repo)?,
        };
        let (lease, own_lease) = match run {
            Some(run) => {
                lease::claim(&repo, run, &mailbox, clock.as_ref()).await?;
                (Arc::clone(&run.held), false)
            }
            None => (
                lease::acquire(&repo, &mailbox, owner, clock.as_ref()).await?,
                true,
            ),
        };
        let budget = writer.budget().clone();
        let session = Self {
            _member: writer.join(),
            writer,
            budget,
            repo,
            mailbox,
            clock,
            lease,
            own_lease,
            settings,
            sha256_checksums,
            needs: BTreeSet::new(),
            stats: SessionStats::default(),
            retention: None,
        };
        // Everything after the lease must release it on failure, or the mailbox stays
        // blocked until expiry.
        if let Err(e) = session.prepare().await {
            session.release_lease().await.ok();
            return Err(e);
        }
        Ok(session)
    }

    async fn prepare(&self) -> Result<()> {
        // Checked *after* our lease exists, while prune creates its lock *before* listing
        // leases: whichever of the two comes second sees the other (see `prune.rs`). The
        // lock of a prune that died (expired, or its process gone) is removed: it must not
        // block backups (issue 11).
        let prune_lock = super::prune::PRUNE_LOCK_KEY;
        if !lease::clear_if_stale(&self.repo, prune_lock, self.clock.as_ref()).await? {
            if let Some(lock) = lease::read_record(&self.repo, prune_lock).await? {
                return Err(lease::held_error(prune_lock, &lock));
            }
        }
        // After the check: a prune that finished before us has replaced index files, and
        // the refresh drops every cached entry of theirs.
        self.repo.refresh_index_report().await?;
        Ok(())
    }

    /// Release the lease if it is this session's own (a run's lease outlives it).
    async fn release_lease(&self) -> Result<()> {
        if self.own_lease {
            lease::release(&self.repo, &self.lease).await
        } else {
            Ok(())
        }
    }

    /// Write the mailbox record unless it exists: it names the mailbox for `list` and must
    /// be there before the first snapshot record (FORMAT §8). A HEAD first, so that the
    /// runs after the first write nothing for it (a create-if-absent put would be an
    /// object write on every run, even when refused). Done right before the snapshot
    /// record rather than at the start, so a run that commits nothing writes nothing for
    /// it, and a record removed meanwhile (a `delete` by a build that does not know run
    /// leases) is written again.
    ///
    /// From format 5 on there are no mailbox records: the snapshot record names the
    /// mailbox ([`super::SNAPSHOTS_NAME_MAILBOXES_FORMAT_VERSION`]).
    async fn ensure_mailbox_record(&self) -> Result<()> {
        if !self.repo.keeps_mailbox_records() {
            return Ok(());
        }
        let key = self.repo.mailbox_record_name(&self.mailbox);
        let store_key = store_key(&key)?;
        if self.repo.store().head(&store_key).await?.is_some() {
            return Ok(());
        }
        let sealed = self
            .repo
            .seal_json(ObjectType::Mailbox, &key, &self.mailbox)?;
        match self
            .repo
            .store()
            .put(&store_key, sealed, PutOptions::CREATE)
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Write everything from now on under this Object Lock retention (S3 stores; others
    /// refuse puts with retention, so only set it when the store enforces locks).
    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = Some(retention);
        self.writer.set_retention(retention);
    }

    fn put_options(&self) -> PutOptions {
        PutOptions {
            retention: self.retention,
            ..PutOptions::CREATE
        }
    }

    /// The mailbox this session writes.
    pub fn mailbox(&self) -> &MailboxId {
        &self.mailbox
    }

    /// Counters so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Whether `id` is stored (or on its way); content still in the writer becomes a
    /// dependency of this session's commit.
    fn known(&mut self, id: &ContentId) -> bool {
        match self.writer.lookup(id) {
            Known::No => false,
            Known::Durable => true,
            Known::InPack(no) => {
                self.needs.insert(no);
                true
            }
        }
    }

    fn count(&mut self, written: Written) {
        self.stats.packs_written += written.packs;
        self.stats.index_files_written += written.index_files;
    }

    /// Store content. Content already in the repository (any mailbox) or already in this
    /// session is not written again. Content above the chunk threshold is stored as chunks
    /// plus a chunk list under the whole content's id.
    pub async fn put_blob(&mut self, kind: BlobKind, data: Bytes) -> Result<StoredBlob> {
        if matches!(kind, BlobKind::Chunk | BlobKind::ChunkList) {
            return Err(Error::invalid("chunk kinds are internal to the repository"));
        }
        if data.len() as u64 > self.settings.chunk_threshold {
            return self.put_chunked(kind, data).await;
        }
        self.put_single(kind, data).await
    }

    /// Start storing content of unknown length piece by piece; see [`BlobWriter`]. For
    /// large items (a 150 MB message) this keeps memory at about one chunk threshold plus
    /// one pack instead of the whole item.
    pub fn put_blob_stream(&mut self, kind: BlobKind) -> Result<BlobWriter<'_>> {
        if matches!(kind, BlobKind::Chunk | BlobKind::ChunkList) {
            return Err(Error::invalid("chunk kinds are internal to the repository"));
        }
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.repo.keys().id[..])
            .expect("invariant: HMAC takes any key length");
        mac.update(&[kind as u8]);
        let sha = self.sha256_checksums.then(Sha256::new);
        Ok(BlobWriter {
            session: self,
            kind,
            mac,
            sha,
            buf: Vec::new(),
            total: 0,
            stored: 0,
            chunks: Vec::new(),
        })
    }

    /// The content id, and the SHA-256 when this repository's format keeps one: one pass
    /// over the bytes either way, and in format 4 one hash. On this task up to
    /// [`INLINE_MAX`], on a blocking thread above.
    async fn hash(&self, kind: BlobKind, data: &Bytes) -> Result<(ContentId, Option<[u8; 32]>)> {
        let keys = self.repo.keys();
        let with_sha = self.sha256_checksums;
        let d = data.clone();
        cpu_work(data.len(), move || {
            if with_sha {
                let (id, sha) = crypto::content_id_and_sha256(&keys.id, kind, &d);
                (id, Some(sha))
            } else {
                (crypto::content_id(&keys.id, kind, &d), None)
            }
        })
        .await
    }

    async fn put_single(&mut self, kind: BlobKind, data: Bytes) -> Result<StoredBlob> {
        let (id, sha) = self.hash(kind, &data).await?;
        let plain_len = data.len() as u64;
        let stored_len = self.put_single_as(kind, id, sha, data).await?;
        Ok(StoredBlob {
            id,
            plain_len,
            stored_len,
            sha256: sha,
        })
    }

    /// Store `data` under an id and checksum the caller computed (the streaming writer
    /// hashes as data arrives); returns the encrypted bytes added (0 when known).
    async fn put_single_as(
        &mut self,
        kind: BlobKind,
        id: ContentId,
        sha: Option<[u8; 32]>,
        data: Bytes,
    ) -> Result<u64> {
        if self.known(&id) {
            self.stats.blobs_deduplicated += 1;
            return Ok(0);
        }
        let keys = self.repo.keys();
        let plain_len = data.len();
        let sealed = cpu_work(plain_len, move || {
            let checksum = sha
                .as_ref()
                .map_or(FrameChecksum::None, FrameChecksum::Sha256);
            crypto::seal_blob_with(&keys.enc, kind, &id, &data, checksum)
        })
        .await?;
        let stored = sealed.len() as u64;
        self.add(id, kind, sealed, plain_len).await?;
        Ok(stored)
    }

    async fn put_chunked(&mut self, kind: BlobKind, data: Bytes) -> Result<StoredBlob> {
        let (id, sha) = self.hash(kind, &data).await?;
        let mut out = StoredBlob {
            id,
            plain_len: data.len() as u64,
            stored_len: 0,
            sha256: sha,
        };
        if self.known(&id) {
            self.stats.blobs_deduplicated += 1;
            return Ok(out);
        }
        let chunk_size = usize::try_from(self.settings.chunk_size).unwrap_or(usize::MAX);
        let mut chunks = Vec::new();
        let mut offset = 0;
        while offset < data.len() {
            let end = (offset + chunk_size).min(data.len());
            let chunk = self
                .put_single(BlobKind::Chunk, data.slice(offset..end))
                .await?;
            out.stored_len += chunk.stored_len;
            chunks.push((chunk.id, (end - offset) as u32));
            offset = end;
        }
        let list = ChunkList {
            kind,
            total_len: data.len() as u64,
            sha256: sha,
            chunks,
        }
        .encode();
        out.stored_len += self.put_chunk_list(id, list).await?;
        Ok(out)
    }

    async fn put_chunk_list(&mut self, id: ContentId, list: Vec<u8>) -> Result<u64> {
        let keys = self.repo.keys();
        let list_len = list.len();
        let with_sha = self.sha256_checksums;
        let sealed = cpu_work(list_len, move || {
            // A chunk list's id is the whole content's, so readers cannot recompute it from
            // the list alone; the AEAD tag authenticates the list, and the reassembled
            // content is checked against the id.
            let sha = with_sha.then(|| crypto::sha256(&list));
            let checksum = sha
                .as_ref()
                .map_or(FrameChecksum::None, FrameChecksum::Sha256);
            crypto::seal_blob_with(&keys.enc, BlobKind::ChunkList, &id, &list, checksum)
        })
        .await?;
        let stored = sealed.len() as u64;
        self.add(id, BlobKind::ChunkList, sealed, list_len).await?;
        Ok(stored)
    }

    async fn add(
        &mut self,
        id: ContentId,
        kind: BlobKind,
        sealed: Vec<u8>,
        plain_len: usize,
    ) -> Result<()> {
        self.stats.blobs_written += 1;
        self.stats.bytes_plain += plain_len as u64;
        self.stats.bytes_stored += sealed.len() as u64;
        let mut written = Written::default();
        let added = self.writer.add(id, kind, sealed, &mut written).await;
        self.count(written);
        self.needs.insert(added?);
        Ok(())
    }

    /// Whether [`BackupSession::relieve_pressure`] would seal the pack being filled.
    pub fn can_relieve_pressure(&self) -> bool {
        self.writer.can_relieve_pressure()
    }

    /// The tenant memory budget this session draws from.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Another worker waits for memory: seal and upload the pack being filled now if it
    /// is worth a pack, so its bytes go back to the budget. Called by a backup while it
    /// waits for downloads, which may be the ones waiting.
    pub async fn relieve_pressure(&mut self) -> Result<()> {
        let mut written = Written::default();
        let relieved = self.writer.relieve_pressure(&mut written).await;
        self.count(written);
        relieved
    }

    /// Serialize a folder item list and store it (docs/FORMAT.md §5.5): as one
    /// `FolderItems` blob up to [`MAX_PIECE_ITEMS`](item_list::MAX_PIECE_ITEMS) items, exactly as before pieces
    /// existed; a longer list as pieces, each serialized and stored before the next is
    /// made (so one piece's JSON exists at a time), then their directory. An unchanged
    /// list yields the same id, and an unchanged piece the same piece, so unchanged
    /// folders are shared between snapshots. The folder entry records both fields of the
    /// result (`items`, `itemPieces`).
    pub async fn put_folder_items(&mut self, items: Vec<MessageMeta>) -> Result<StoredItems> {
        let ends = item_list::piece_ends(&items);
        if ends.is_empty() {
            let stored = self
                .put_blob(BlobKind::FolderItems, item_list::serialize(&items)?)
                .await?;
            return Ok(StoredItems {
                id: stored.id,
                pieces: None,
            });
        }
        let mut pieces = Vec::with_capacity(ends.len());
        let mut start = 0;
        for end in ends {
            let json = item_list::serialize(&items[start..end])?;
            let stored = self.put_blob(BlobKind::FolderItems, json).await?;
            pieces.push(PieceRef {
                id: stored.id,
                count: (end - start) as u64,
            });
            start = end;
        }
        drop(items);
        let (json, count) = item_list::directory(pieces)?;
        let stored = self.put_blob(BlobKind::FolderItems, json).await?;
        Ok(StoredItems {
            id: stored.id,
            pieces: Some(count),
        })
    }

    /// Wait until everything this session stored so far is durable and findable (in a
    /// tenant run, possibly for the shared pack to fill; see `writer.rs`). Renews the
    /// lease when more than half of it has elapsed.
    pub async fn flush(&mut self) -> Result<()> {
        let mut written = Written::default();
        let flushed = self.writer.flush(&mut self.needs, &mut written).await;
        self.count(written);
        flushed?;
        self.keep_lease().await
    }

    /// Renew the lease once half of its lifetime has passed since it was last written.
    /// The binary's heartbeat renews it on a timer; this keeps a session that runs without
    /// one (a library caller) alive as long as it makes progress.
    pub async fn keep_lease(&mut self) -> Result<()> {
        let half = chrono::Duration::seconds(
            i64::try_from(self.settings.lease_seconds / 2).unwrap_or(i64::MAX / 1000),
        );
        if self.clock.now() >= self.lease.renewed() + half {
            self.renew_lease().await?;
        }
        Ok(())
    }

    /// Extend the lease (fails with [`Error::LeaseLost`] if it was broken).
    pub async fn renew_lease(&mut self) -> Result<()> {
        lease::renew(&self.repo, &self.lease, self.clock.as_ref()).await
    }

    /// When the lease expires unless renewed.
    pub fn lease_expires(&self) -> DateTime<Utc> {
        self.lease.expires()
    }

    /// Flush, write the snapshot record, release the lease. The record's mailbox must be
    /// the session's, and every folder item list it names must be stored.
    /// Every way out releases the lease: a commit that fails (a full disk, a lost lease)
    /// releases it too, so the mailbox is never left blocked.
    pub async fn commit(mut self, record: SnapshotRecord) -> Result<SnapshotId> {
        match self.write_snapshot(record).await {
            // The snapshot is committed; a lease that cannot be deleted now stays
            // registered and is released on the exit path (or expires), and the error
            // says the run did not end cleanly.
            Ok(id) => self.release_lease().await.map(|()| id),
            Err(e) => {
                let _ = self.release_lease().await;
                Err(e)
            }
        }
    }

    async fn write_snapshot(&mut self, mut record: SnapshotRecord) -> Result<SnapshotId> {
        // A folder whose list is in pieces makes the record one that builds without
        // pieces refuse (docs/FORMAT.md §5.5), whoever built the record.
        if record.folders.iter().any(|f| f.item_pieces.is_some()) {
            record.format_version = record.format_version.max(item_list::PIECED_FORMAT_VERSION);
        }
        if record.mailbox != self.mailbox {
            return Err(Error::invalid(
                "snapshot record names another mailbox than the session",
            ));
        }
        self.flush().await?;
        for f in &record.folders {
            if self.repo.index_lookup(&f.items).is_none() {
                return Err(Error::ContentNotFound { id: f.items });
            }
        }
        lease::check_held(&self.repo, &self.lease).await?;
        self.ensure_mailbox_record().await?;
        let id = SnapshotId::random();
        let key = snapshot_key(
            &self.repo.mailbox_key_name(&self.mailbox),
            record.started,
            id,
        );
        let sealed = self.repo.seal_json(ObjectType::Snapshot, &key, &record)?;
        self.repo
            .store()
            .put(&store_key(&key)?, sealed, self.put_options())
            .await?;
        Ok(id)
    }

    /// End the run without a snapshot: flush what was stored (so it can be deduplicated
    /// next time) and release the lease — also when the flush fails (a full disk must not
    /// leave the mailbox blocked). The flush's error comes first.
    pub async fn release(mut self) -> Result<()> {
        let flushed = self.flush().await;
        let released = self.release_lease().await;
        flushed.and(released)
    }
}

/// A streaming writer of one piece of content (see [`BackupSession::put_blob_stream`]).
///
/// Data is hashed as it arrives (the content id, and the SHA-256 in repositories before
/// format 4, are computed incrementally, so the id does not depend on how the caller
/// splits the content) and kept in memory only up to
/// the chunk threshold; past it, content is cut into chunks at fixed offsets and each chunk
/// is sealed and added to the current pack as soon as it is complete. Peak memory is the
/// chunk threshold plus one pack, whatever the content's size. The stored result is
/// exactly what [`BackupSession::put_blob`] stores for the same bytes.
#[derive(Debug)]
pub struct BlobWriter<'a> {
    session: &'a mut BackupSession,
    kind: BlobKind,
    mac: Hmac<Sha256>,
    /// Only in repositories before format 4.
    sha: Option<Sha256>,
    buf: Vec<u8>,
    total: u64,
    /// Encrypted bytes added so far (new chunks).
    stored: u64,
    chunks: Vec<(ContentId, u32)>,
}

impl BlobWriter<'_> {
    /// Append data.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.mac.update(data);
        if let Some(sha) = &mut self.sha {
            sha.update(data);
        }
        self.total += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.total > self.session.settings.chunk_threshold {
            let size = usize::try_from(self.session.settings.chunk_size).unwrap_or(usize::MAX);
            while self.buf.len() >= size {
                let rest = self.buf.split_off(size);
                let chunk = std::mem::replace(&mut self.buf, rest);
                self.put_chunk(chunk).await?;
            }
        }
        Ok(())
    }

    async fn put_chunk(&mut self, chunk: Vec<u8>) -> Result<()> {
        let len = u32::try_from(chunk.len()).map_err(|_| Error::invalid("chunk above 4 GiB"))?;
        let stored = self
            .session
            .put_single(BlobKind::Chunk, Bytes::from(chunk))
            .await?;
        self.stored += stored.stored_len;
        self.chunks.push((stored.id, len));
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Store what remains; the result describes the whole content.
    pub async fn finish(mut self) -> Result<StoredBlob> {
        let id = ContentId::from_bytes(self.mac.clone().finalize().into_bytes().into());
        let sha: Option<[u8; 32]> = self.sha.clone().map(|s| s.finalize().into());
        let mut out = StoredBlob {
            id,
            plain_len: self.total,
            stored_len: 0,
            sha256: sha,
        };
        if self.chunks.is_empty() && self.total <= self.session.settings.chunk_threshold {
            let data = Bytes::from(std::mem::take(&mut self.buf));
            out.stored_len = self.session.put_single_as(self.kind, id, sha, data).await?;
            return Ok(out);
        }
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.put_chunk(chunk).await?;
        }
        out.stored_len = self.stored;
        if self.session.known(&id) {
            self.session.stats.blobs_deduplicated += 1;
            return Ok(out);
        }
        let list = ChunkList {
            kind: self.kind,
            total_len: self.total,
            sha256: sha,
            chunks: std::mem::take(&mut self.chunks),
        }
        .encode();
        out.stored_len += self.session.put_chunk_list(id, list).await?;
        Ok(out)
    }
}
