//! The pack writer: where backup sessions put their sealed blobs.
//!
//! A session on its own ([`Repository::begin_backup`]) has a writer of its own, exactly as
//! before. A tenant run ([`crate::service::backup::backup_mailboxes`]) makes one writer
//! ([`Repository::pack_writer`]) that every mailbox session of the run shares, so the
//! mailboxes fill one open pack together instead of each leaving a partly filled pack (and
//! an index file) behind, and one pack buffer is held instead of one per mailbox. A pack
//! may then hold blobs of several mailboxes; the format does not change (packs and index
//! files never said whose blobs they hold).
//!
//! **Order.** Data → index → record holds per session: every blob a session put, and every
//! blob it deduplicated against while that blob still sat in the writer, is noted as a
//! dependency on its pack (a number counted by the writer). [`PackWriter::flush`] returns
//! only when each of those packs is uploaded *and* named by an index file that is written
//! and merged into the repository's index; only then does a commit write its record.
//!
//! **Group commit.** A session that finishes while its blobs sit in the open pack does not
//! seal that pack at once (that is what made one pack per mailbox): it waits until the
//! pack fills (other sessions' blobs), or until every live session of the writer is
//! waiting the same way (then the last one to arrive seals it), or until a worker waits
//! for memory (then the pack is sealed so its bytes go back to the budget). Whoever finds
//! its packs uploaded but not yet indexed writes one index file for everything uploaded so
//! far, which usually covers the others waiting too. Nothing waits for anything that is not
//! itself making progress, so there is no deadlock: a session is live from
//! [`PackWriter::join`] until its [`Member`] is dropped (commit, release, failure or panic).
//!
//! **Buffers.** A pack buffer is the size of a pack (16 MiB by default). Once a pack is
//! stored, its buffer becomes the next pack's instead of going back to the allocator: a
//! run holds two (one filling, one uploading) however many packs it writes. Only the
//! holder of the upload slot takes a pack out of filling: a pack that fills while the
//! previous one still uploads stays where it is, and the sessions adding to it wait for
//! that upload (and its buffer) instead of opening a third buffer. Before, the full pack
//! was taken at once and waited for the slot in a buffer of its own while the next one
//! filled in a third — part of what made peak memory grow with mailbox size
//! (docs/BENCHMARKS.md, `deep`). Freeing and
//! allocating them instead is what kept a backup's resident memory far above what it
//! used: glibc's malloc raises its mmap threshold to the size of a freed mapping (up to
//! 32 MiB), so after the first pack every later one came from a thread arena that kept the
//! pages (docs/BENCHMARKS.md, heap profile).
//!
//! **Failures.** A pack whose upload fails (or whose uploader is dropped half-way) is
//! *lost*: every session depending on it fails its flush and so commits nothing, exactly
//! as the one session owning a pack did before. A failed index write leaves its entries to
//! the next flush.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

use super::budget::{Grant, MemoryBudget};
use super::crypto::{self, ObjectType};
use super::index::{IndexEntry, Location};
use super::pack::{PackBuilder, PackId};
use super::{BlobKind, RepoSettings, Repository, store_key};
use crate::error::{Error, Result};
use crate::model::ContentId;
use crate::ports::{PutOptions, Retention, StoreError};

/// Where a blob the writer was asked about lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// Not stored anywhere.
    No,
    /// In an index file already merged: durable.
    Durable,
    /// In a pack of this writer not yet durable and indexed (its number).
    InPack(u64),
}

/// What the writer did for one call, for the caller's counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Written {
    pub(crate) packs: u64,
    pub(crate) index_files: u64,
}

/// The shared writer; see the module docs. Cheap to clone (clones share the packs).
#[derive(Debug, Clone)]
pub struct PackWriter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    repo: Repository,
    settings: RepoSettings,
    budget: MemoryBudget,
    state: Mutex<State>,
    /// Woken whenever a pack is taken out, uploaded or lost, an index file is written or
    /// a session leaves: waiting flushes look again.
    changed: Notify,
    /// The upload slot. Uploads and index writes one at a time: at most one pack is on
    /// its way to the store while the next one fills, and index files follow the uploads
    /// they cover. A pack is taken out of filling only while this is held (see the module
    /// docs, "Buffers").
    io: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    /// The open pack and its number.
    current: PackBuilder,
    current_no: u64,
    /// What `current` draws from the memory budget.
    current_grant: Grant,
    /// Ids in packs not yet uploaded (the open one and those on their way), by pack.
    pending: HashMap<ContentId, u64>,
    /// Packs taken out of filling whose upload has not finished.
    uploading: BTreeSet<u64>,
    /// Entries of uploaded packs not yet in an index file (taken by an index write).
    unindexed: Vec<IndexEntry>,
    /// Ids of uploaded packs whose index file is not written yet, by pack.
    unindexed_ids: HashMap<ContentId, u64>,
    /// Uploaded packs whose index file is not written yet (until it is).
    unindexed_packs: BTreeSet<u64>,
    /// Packs whose upload failed, with why.
    lost: HashMap<u64, String>,
    /// Sessions joined and not yet gone.
    live: usize,
    /// Sessions waiting in `flush`.
    waiting: usize,
    retention: Option<Retention>,
    /// The buffer of a stored pack, for the next pack to fill (see the module docs).
    spare: Option<Vec<u8>>,
    /// Pack buffers allocated so far (the rest were reused).
    buffers: u64,
}

/// Where one pack a session depends on stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Open,
    Uploading,
    Unindexed,
    Lost,
    Indexed,
}

impl State {
    fn standing(&self, no: u64) -> Standing {
        if self.lost.contains_key(&no) {
            Standing::Lost
        } else if no == self.current_no && !self.current.is_empty() {
            Standing::Open
        } else if self.uploading.contains(&no) {
            Standing::Uploading
        } else if self.unindexed_packs.contains(&no) {
            Standing::Unindexed
        } else {
            Standing::Indexed
        }
    }
}

/// A pack taken out of filling, to be uploaded by whoever took it (who holds the upload
/// slot).
struct Taken {
    no: u64,
    builder: PackBuilder,
    grant: Grant,
}

/// Marks a taken pack lost unless its upload finished (the uploader failed or was
/// dropped half-way), so nobody waits for it forever.
struct Upload<'a> {
    inner: &'a Inner,
    no: u64,
    done: bool,
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.inner.lock();
        s.uploading.remove(&self.no);
        s.lost
            .entry(self.no)
            .or_insert_with(|| "its upload was interrupted".into());
        let no = self.no;
        s.pending.retain(|_, p| *p != no);
        drop(s);
        self.inner.changed.notify_waiters();
    }
}

/// A session's membership of a writer: counted as live until dropped.
#[derive(Debug)]
pub(crate) struct Member {
    inner: Arc<Inner>,
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.live = s.live.saturating_sub(1);
        drop(s);
        self.inner.changed.notify_waiters();
    }
}

/// Counts one session as waiting in `flush` while alive.
struct Waiting<'a> {
    inner: &'a Inner,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.waiting = s.waiting.saturating_sub(1);
    }
}

/// What a flush does next.
enum Step {
    Seal(u64),
    /// Everyone live waits: let other tasks run once before sealing (see `flush`).
    Yield,
    WriteIndex,
    Wait {
        open: bool,
    },
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn target(&self) -> usize {
        usize::try_from(self.settings.pack_target_size).unwrap_or(usize::MAX)
    }

    /// Take the open pack out of filling (a fresh one opens under the next number, in
    /// the spare buffer if there is one).
    fn take(&self, s: &mut State) -> Taken {
        let next = if let Some(buf) = s.spare.take() {
            PackBuilder::with_buffer(buf)
        } else {
            s.buffers += 1;
            PackBuilder::with_capacity(pack_capacity(&self.settings))
        };
        let builder = std::mem::replace(&mut s.current, next);
        let grant = std::mem::replace(&mut s.current_grant, self.budget.empty());
        let no = s.current_no;
        s.current_no += 1;
        s.uploading.insert(no);
        Taken { no, builder, grant }
    }

    fn put_options(&self) -> PutOptions {
        PutOptions {
            retention: self.lock().retention,
            ..PutOptions::CREATE
        }
    }

    /// Take the open pack out of filling and upload it, if `should` still holds once the
    /// upload slot is ours; returns whether a pack was uploaded.
    async fn take_and_upload(&self, should: impl Fn(&State) -> bool) -> Result<bool> {
        let io = self.io.lock().await;
        let taken = {
            let mut s = self.lock();
            should(&s).then(|| self.take(&mut s))
        };
        match taken {
            Some(t) => self.upload(t, io).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Upload a taken pack; `_io` is the upload slot, held since before it was taken.
    async fn upload(&self, taken: Taken, _io: tokio::sync::MutexGuard<'_, ()>) -> Result<()> {
        let Taken { no, builder, grant } = taken;
        let mut guard = Upload {
            inner: self,
            no,
            done: false,
        };
        let keys = self.repo.keys();
        let pack_id = PackId::random();
        let result = async {
            let (bytes, entries) =
                tokio::task::spawn_blocking(move || builder.finish(&keys.enc, pack_id))
                    .await
                    .map_err(|e| Error::task(&e))??;
            let body = Bytes::from(bytes);
            self.repo
                .store()
                .put(
                    &store_key(&pack_id.store_key())?,
                    body.clone(),
                    self.put_options(),
                )
                .await?;
            Ok::<_, Error>((entries, body))
        }
        .await;
        let entries = match result {
            Ok((entries, body)) => {
                self.recycle(body);
                entries
            }
            Err(e) => {
                self.lock().lost.insert(no, e.to_string());
                return Err(e);
            }
        };
        let mut s = self.lock();
        for e in entries {
            let location = Location {
                kind: e.kind,
                pack: pack_id,
                offset: e.offset,
                length: e.length,
            };
            s.pending.remove(&e.id);
            s.unindexed_ids.insert(e.id, no);
            s.unindexed.push(IndexEntry { id: e.id, location });
        }
        s.uploading.remove(&no);
        s.unindexed_packs.insert(no);
        drop(s);
        guard.done = true;
        // The pack's bytes go back to the budget only now that they are stored.
        drop(grant);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Keep a stored pack's buffer for the next pack, unless the store still holds it (a
    /// memory store keeps the bytes it was given) or a spare is kept already.
    fn recycle(&self, body: Bytes) {
        let Ok(body) = body.try_into_mut() else {
            return;
        };
        let buf = Vec::from(body);
        if buf.capacity() < pack_capacity(&self.settings) {
            return;
        }
        let mut s = self.lock();
        if s.spare.is_none() {
            s.spare = Some(buf);
        }
    }

    /// Write one index file for every uploaded pack not indexed yet; merged into the
    /// repository's index (for reads and dedup) once it is stored.
    async fn write_index(&self) -> Result<bool> {
        let _io = self.io.lock().await;
        let (entries, packs) = {
            let mut s = self.lock();
            (std::mem::take(&mut s.unindexed), s.unindexed_packs.clone())
        };
        if entries.is_empty() {
            return Ok(false);
        }
        let mut name = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut name);
        let key = format!("{}{}", super::layout::INDEX_PREFIX, hex::encode(name));
        let payload = super::index::encode_index(&entries);
        let keys = self.repo.keys();
        let k = key.clone();
        let stored = async {
            let sealed = tokio::task::spawn_blocking(move || {
                crypto::seal_object(&keys.enc, ObjectType::Index, k.as_bytes(), &payload)
            })
            .await
            .map_err(|e| Error::task(&e))?;
            self.repo
                .store()
                .put(&store_key(&key)?, Bytes::from(sealed), self.put_options())
                .await
                .map_err(Error::from)
        }
        .await;
        let mut s = self.lock();
        if let Err(e) = stored {
            // Left for the next flush: the packs are stored, only their index is not.
            let newer = std::mem::replace(&mut s.unindexed, entries);
            s.unindexed.extend(newer);
            return Err(e);
        }
        // Merged while the writer's state is locked, so a lookup sees each id either
        // here or in the repository's index, never in neither.
        self.repo.index_merge(key, &entries);
        for e in &entries {
            s.unindexed_ids.remove(&e.id);
        }
        for no in packs {
            s.unindexed_packs.remove(&no);
        }
        drop(s);
        self.changed.notify_waiters();
        Ok(true)
    }
}

impl PackWriter {
    /// A writer for the sessions of one run (see the module docs).
    pub(crate) fn new(repo: &Repository) -> Result<Self> {
        let settings = repo.require_config()?.settings;
        let budget = repo.memory_budget();
        let state = State {
            current: PackBuilder::with_capacity(pack_capacity(&settings)),
            current_no: 0,
            current_grant: budget.empty(),
            pending: HashMap::new(),
            uploading: BTreeSet::new(),
            unindexed: Vec::new(),
            unindexed_ids: HashMap::new(),
            unindexed_packs: BTreeSet::new(),
            lost: HashMap::new(),
            live: 0,
            waiting: 0,
            retention: None,
            spare: None,
            buffers: 1,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                repo: repo.clone(),
                settings,
                budget,
                state: Mutex::new(state),
                changed: Notify::new(),
                io: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Count a session as live until the membership is dropped.
    pub(crate) fn join(&self) -> Member {
        self.inner.lock().live += 1;
        Member {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Packs written from now on carry this retention (Object Lock).
    pub(crate) fn set_retention(&self, retention: Retention) {
        self.inner.lock().retention = Some(retention);
    }

    /// Pack buffers this writer has allocated: two (one filling, one uploading), however
    /// many packs it wrote and however many sessions fill them (stored packs' buffers are
    /// reused, and a full pack waits for the upload slot). For tests and benchmarks.
    pub fn pack_buffers(&self) -> u64 {
        self.inner.lock().buffers
    }

    /// The memory budget the packs draw from.
    pub(crate) fn budget(&self) -> &MemoryBudget {
        &self.inner.budget
    }

    /// Whether `id` is stored, and if only in this writer, in which pack.
    pub(crate) fn lookup(&self, id: &ContentId) -> Known {
        let s = self.inner.lock();
        if let Some(no) = s.pending.get(id).or_else(|| s.unindexed_ids.get(id)) {
            return Known::InPack(*no);
        }
        // Under the state lock: an index write merges and forgets in one step.
        if self.inner.repo.index_lookup(id).is_some() {
            Known::Durable
        } else {
            Known::No
        }
    }

    /// Add a sealed blob to the open pack (the full pack is uploaded first); returns the
    /// number of the pack it joined.
    pub(crate) async fn add(
        &self,
        id: ContentId,
        kind: BlobKind,
        sealed: Vec<u8>,
        written: &mut Written,
    ) -> Result<u64> {
        let target = self.inner.target();
        // The upload slot, once the blob is found not to fit: the full pack is taken out
        // only by its holder, so it never waits for the slot in a buffer of its own while
        // the next pack fills in another (module docs, "Buffers").
        let mut io = None;
        let (taken, added) = loop {
            let step = {
                let mut s = self.inner.lock();
                let full = !s.current.is_empty() && s.current.blob_bytes() + sealed.len() > target;
                if full && io.is_none() {
                    None
                } else {
                    let taken = full.then(|| self.inner.take(&mut s));
                    // Memory that exists already (its download was admitted): accounted,
                    // not waited for.
                    s.current_grant.grow(sealed.len() as u64);
                    let no = s.current_no;
                    let added = s.current.push(id, kind, &sealed).map(|()| {
                        s.pending.insert(id, no);
                        no
                    });
                    Some((taken, added))
                }
            };
            match step {
                Some(done) => break done,
                None => io = Some(self.inner.io.lock().await),
            }
        };
        drop(sealed);
        if let (Some(t), Some(io)) = (taken, io) {
            self.inner.upload(t, io).await?;
            written.packs += 1;
        }
        let no = added?;
        if self.inner.budget.has_waiters() && self.can_relieve_pressure() {
            self.relieve_pressure(written).await?;
        }
        Ok(no)
    }

    /// Below this many bytes the open pack is not sealed early for a waiting worker: tiny
    /// packs would only trade memory for objects.
    fn pressure_seal_bytes(&self) -> usize {
        let limit = usize::try_from(self.inner.budget.limit()).unwrap_or(usize::MAX);
        (self.inner.target() / 8).min(limit / 32).max(1)
    }

    /// Whether [`PackWriter::relieve_pressure`] would seal the open pack.
    pub(crate) fn can_relieve_pressure(&self) -> bool {
        let s = self.inner.lock();
        !s.current.is_empty() && s.current.blob_bytes() >= self.pressure_seal_bytes()
    }

    /// Seal and upload the open pack now if it is worth a pack, so its bytes go back to
    /// the budget for a worker waiting for memory.
    pub(crate) async fn relieve_pressure(&self, written: &mut Written) -> Result<()> {
        let least = self.pressure_seal_bytes();
        if self
            .inner
            .take_and_upload(|s| !s.current.is_empty() && s.current.blob_bytes() >= least)
            .await?
        {
            written.packs += 1;
        }
        Ok(())
    }

    /// Seal the open pack if it is still pack `no`.
    async fn seal(&self, no: u64, written: &mut Written) -> Result<()> {
        if self
            .inner
            .take_and_upload(|s| s.current_no == no && !s.current.is_empty())
            .await?
        {
            written.packs += 1;
        }
        Ok(())
    }

    /// Return once every pack in `needs` is stored and indexed (emptying `needs`); see
    /// the module docs for when the open pack is sealed. Fails if one of them was lost.
    pub(crate) async fn flush(
        &self,
        needs: &mut BTreeSet<u64>,
        written: &mut Written,
    ) -> Result<()> {
        if needs.is_empty() {
            return Ok(());
        }
        self.inner.lock().waiting += 1;
        let _waiting = Waiting { inner: &self.inner };
        let mut pressed = false;
        let mut yielded = false;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let step = {
                let s = self.inner.lock();
                let mut open = None;
                let (mut uploading, mut unindexed) = (false, false);
                let mut lost = None;
                needs.retain(|&no| match s.standing(no) {
                    Standing::Indexed => false,
                    Standing::Open => {
                        open = Some(no);
                        true
                    }
                    Standing::Uploading => {
                        uploading = true;
                        true
                    }
                    Standing::Unindexed => {
                        unindexed = true;
                        true
                    }
                    Standing::Lost => {
                        lost = Some(no);
                        true
                    }
                });
                if let Some(no) = lost {
                    let detail = s.lost.get(&no).cloned().unwrap_or_default();
                    return Err(Error::Store(StoreError::Transient {
                        key: "packs/".into(),
                        detail: format!(
                            "a pack holding this run's data could not be stored: {detail}"
                        ),
                    }));
                }
                if needs.is_empty() {
                    return Ok(());
                }
                match open {
                    // Everyone live waits, or memory is short: nobody else will fill it.
                    // Everyone waiting is looked at twice, with a yield between: a mailbox
                    // given a running place by a commit that just started waiting (its
                    // `Slot`) joins only once its task runs, and until then the pack would
                    // be sealed half-empty. (Blobs up to 64 KiB are sealed on the storing
                    // task since 2026-12-06, so a session can reach its commit without
                    // yielding to such a task first.)
                    Some(no) if pressed || (yielded && s.waiting >= s.live) => Step::Seal(no),
                    Some(_) if s.waiting >= s.live => Step::Yield,
                    Some(_) => Step::Wait { open: true },
                    None if uploading => Step::Wait { open: false },
                    None if unindexed => Step::WriteIndex,
                    None => Step::Wait { open: false },
                }
            };
            match step {
                Step::Seal(no) => {
                    pressed = false;
                    self.seal(no, written).await?;
                }
                Step::Yield => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Step::WriteIndex => {
                    if self.inner.write_index().await? {
                        written.index_files += 1;
                    }
                }
                Step::Wait { open: true } => {
                    tokio::select! {
                        () = &mut changed => {}
                        () = self.inner.budget.contended() => pressed = true,
                    }
                }
                Step::Wait { open: false } => changed.await,
            }
        }
    }
}

/// Room reserved for a pack buffer: the target plus one blob's worth of slack, so the
/// buffer is never reallocated while it fills (a reallocation would copy the pack and,
/// for a moment, hold it twice). Reserved pages that are never written cost nothing.
fn pack_capacity(settings: &RepoSettings) -> usize {
    let target = usize::try_from(settings.pack_target_size).unwrap_or(usize::MAX);
    target.saturating_add(64 << 10).min(1 << 30)
}
