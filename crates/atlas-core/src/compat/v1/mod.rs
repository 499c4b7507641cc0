//! Read-only access to a bucket written by TypeScript Atlas 1.x.
//!
//! Layout (see `reference/atlas-v1-facts.md` §1–3): `_meta/dek.enc` (the passphrase-wrapped
//! data key, opened by [`crate::repo::keyfile`]), `manifests/<mailbox>/<snapshot>.json`
//! (encrypted delta manifests), `data/<mailbox>/<sha256>` (encrypted Graph message JSON),
//! `attachments/<mailbox>/<sha256>` (encrypted attachment bytes). Every object is
//! `iv | tag | AES-256-GCM ciphertext` without associated data, so a swapped object is only
//! caught by the plaintext checksum: every read here checks
//! `sha256(plaintext) == key suffix == manifest checksum`, attachments included (the old
//! tool never checked those).
//!
//! The reader never writes: Atlas services work on v2 repositories, and a v1 bucket is
//! made readable by converting it ([`crate::service::migrate`]).
//!
//! v1 manifests are deltas. The state "as of" a snapshot is the merge of it and every
//! older manifest of the mailbox, the newest version of each message id winning
//! ([`V1SnapshotList::as_of`]). v1 never recorded deletions or moves-out, so that state
//! can hold messages that were already gone; [`V1State::deletions_recorded`] says so.

mod graph;
mod manifest;
pub mod mime;
mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub use graph::{
    GraphAddress, GraphBody, GraphFlag, GraphMessage, GraphRecipient, parse_graph_time,
};
pub use manifest::{V1AttachmentEntry, V1Entry, V1Manifest};
pub use verify::{V1Problem, V1ProblemKind, V1VerifyReport};

use crate::error::{Error, Result};
use crate::model::{ContentId, MailboxId};
use crate::ports::{BlobStore, StoreError, StoreKey};
use crate::repo::{DataKey, Passphrase, Repository, decrypt_v1_object};

/// Prefix of v1 manifest keys.
pub const MANIFESTS_PREFIX: &str = "manifests/";

/// Whether `store` holds a TypeScript Atlas 1.x repository: a wrapped key, at least one
/// `manifests/<mailbox>/<id>.json`, and no v2 `config`. Reads key names only.
pub async fn detect(store: &Arc<dyn BlobStore>) -> Result<bool> {
    if !crate::repo::has_key_blob(store).await? || crate::repo::has_config(store).await? {
        return Ok(false);
    }
    Ok(store
        .list(MANIFESTS_PREFIX)
        .await?
        .iter()
        .any(|m| parse_manifest_key(m.key.as_str()).is_some()))
}

/// `manifests/<mailbox>/<snapshot>.json` → (mailbox segment, snapshot id).
fn parse_manifest_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(MANIFESTS_PREFIX)?;
    let (mailbox, file) = rest.split_once('/')?;
    let snapshot = file.strip_suffix(".json")?;
    (!mailbox.is_empty() && !snapshot.is_empty() && !snapshot.contains('/'))
        .then_some((mailbox, snapshot))
}

/// An opened v1 repository (read-only). Cheap to clone.
#[derive(Debug, Clone)]
pub struct V1Repository {
    store: Arc<dyn BlobStore>,
    tenant: String,
    dek: DataKey,
}

/// One readable snapshot of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1SnapshotInfo {
    /// Mailbox segment as written in the keys (lower-cased address, or a GUID).
    pub mailbox: String,
    /// Snapshot id (the manifest file name).
    pub snapshot_id: String,
    /// Store key of the manifest.
    pub manifest_key: String,
    /// `created_at` of the manifest (end of the run).
    pub created_at: DateTime<Utc>,
    /// The decrypted manifest.
    pub manifest: Arc<V1Manifest>,
}

/// The snapshots of one mailbox, oldest first, and the manifests that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1SnapshotList {
    /// Readable snapshots, by `created_at` then id.
    pub snapshots: Vec<V1SnapshotInfo>,
    /// Manifests that are missing, damaged or unparsable: their time is unknown, so any of
    /// them may hold messages of any "as of" state.
    pub damaged: Vec<V1Problem>,
}

/// The merged state of a mailbox as of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1State {
    /// The snapshot the state is "as of".
    pub snapshot: V1SnapshotInfo,
    /// Newest entry of every message id seen up to this snapshot, by object id.
    pub entries: Vec<V1Entry>,
    /// Always `false` for v1: deletions and moves-out were never recorded, so the state
    /// may hold messages that no longer existed at that time (a moved message appears
    /// twice, under its old and its new id).
    pub deletions_recorded: bool,
    /// Damaged manifests of the mailbox whose entries could not be merged.
    pub damaged_manifests: Vec<V1Problem>,
}

/// A decrypted, checked message data object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V1Payload {
    /// Graph message JSON (everything TypeScript Atlas 1.x wrote).
    Graph(Box<GraphMessage>),
    /// Raw RFC 5322 MIME (a successor's `payload_format` naming MIME).
    Mime(Bytes),
}

impl V1SnapshotList {
    /// The merged state as of `snapshot_id`; `None` if it is not a readable snapshot.
    pub fn as_of(&self, snapshot_id: &str) -> Option<V1State> {
        let pos = self
            .snapshots
            .iter()
            .position(|s| s.snapshot_id == snapshot_id)?;
        let mut merged: BTreeMap<&str, &V1Entry> = BTreeMap::new();
        for snap in &self.snapshots[..=pos] {
            for e in &snap.manifest.entries {
                merged.insert(e.object_id.as_str(), e);
            }
        }
        Some(V1State {
            snapshot: self.snapshots[pos].clone(),
            entries: merged.into_values().cloned().collect(),
            deletions_recorded: false,
            damaged_manifests: self.damaged.clone(),
        })
    }
}

impl V1Repository {
    /// Open a v1 repository with its passphrase and tenant id (the tenant id is mixed into
    /// the key derivation). Reads only. Fails with [`Error::WrongPassphrase`],
    /// [`Error::NotInitialized`] (no key), or [`Error::InvalidInput`] when the store is a
    /// v2 repository (open that with [`Repository::open`]).
    pub async fn open(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
    ) -> Result<Self> {
        let repo = Repository::open(Arc::clone(&store), tenant, passphrase).await?;
        if repo.config().is_some() {
            return Err(Error::invalid(
                "the store holds an Atlas v2 repository, not a TypeScript Atlas 1.x bucket",
            ));
        }
        Ok(Self {
            store,
            tenant: tenant.to_owned(),
            dek: repo.data_key(),
        })
    }

    /// The tenant id the key was opened for.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The underlying store (for descriptions in reports).
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// Mailbox segments that have at least one manifest, sorted (key names only).
    pub async fn list_mailboxes(&self) -> Result<Vec<String>> {
        let mut out = BTreeSet::new();
        for m in self.store.list(MANIFESTS_PREFIX).await? {
            if let Some((mb, _)) = parse_manifest_key(m.key.as_str()) {
                out.insert(mb.to_owned());
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The v2 mailbox id for a v1 mailbox segment (lower-cased address).
    pub fn mailbox_id(segment: &str) -> MailboxId {
        MailboxId::new(segment)
    }

    /// Every snapshot of a mailbox, oldest first. Each manifest is decrypted (its
    /// `created_at` is inside); unreadable ones are listed in
    /// [`V1SnapshotList::damaged`] instead of failing the listing.
    pub async fn list_snapshots(&self, mailbox: &str) -> Result<V1SnapshotList> {
        let prefix = format!("{MANIFESTS_PREFIX}{mailbox}/");
        let mut list = V1SnapshotList::default();
        for m in self.store.list(&prefix).await? {
            let key = m.key.as_str();
            let Some((mb, snapshot_id)) = parse_manifest_key(key) else {
                continue;
            };
            if mb != mailbox {
                continue;
            }
            match self.load_manifest_key(key).await {
                Ok((manifest, created_at)) => list.snapshots.push(V1SnapshotInfo {
                    mailbox: mailbox.to_owned(),
                    snapshot_id: snapshot_id.to_owned(),
                    manifest_key: key.to_owned(),
                    created_at,
                    manifest: Arc::new(manifest),
                }),
                Err(e) if is_object_damage(&e) => list.damaged.push(V1Problem::from_error(
                    mailbox,
                    Some(snapshot_id),
                    key,
                    None,
                    None,
                    &e,
                )),
                Err(e) => return Err(e),
            }
        }
        list.snapshots
            .sort_by(|a, b| (a.created_at, &a.snapshot_id).cmp(&(b.created_at, &b.snapshot_id)));
        Ok(list)
    }

    /// Decrypt and parse one manifest; its `created_at` must parse.
    async fn load_manifest_key(&self, key: &str) -> Result<(V1Manifest, DateTime<Utc>)> {
        let plain = self.decrypt(key).await?;
        let manifest: V1Manifest = serde_json::from_slice(&plain)
            .map_err(|e| Error::corrupt(key, format!("manifest JSON: {e}")))?;
        let created_at = parse_graph_time(Some(&manifest.created_at))
            .ok_or_else(|| Error::corrupt(key, "manifest created_at is not a timestamp"))?;
        Ok((manifest, created_at))
    }

    /// Fetch and decrypt one object (no checksum check).
    async fn decrypt(&self, key: &str) -> Result<Vec<u8>> {
        let sk = StoreKey::new(key)?;
        let bytes = self
            .store
            .get(&sk)
            .await
            .map_err(Error::from_store_required)?;
        let dek = self.dek.clone();
        let name = key.to_owned();
        tokio::task::spawn_blocking(move || decrypt_v1_object(&dek, &bytes, &name))
            .await
            .map_err(|e| Error::task(&e))?
    }

    /// Fetch, decrypt and check a content-addressed object: its key must be
    /// `<prefix>/<mailbox>/<sha256>`, and the plaintext's SHA-256 must equal both the key
    /// suffix and `checksum`.
    async fn read_checked(
        &self,
        prefix: &str,
        mailbox: &str,
        key: &str,
        checksum: &str,
    ) -> Result<Vec<u8>> {
        let expected_prefix = format!("{prefix}/{mailbox}/");
        let suffix = key
            .strip_prefix(&expected_prefix)
            .ok_or_else(|| Error::corrupt(key, format!("key is not under {expected_prefix}")))?;
        let id = suffix
            .parse::<ContentId>()
            .map_err(|_| Error::corrupt(key, "key suffix is not a SHA-256"))?;
        if !checksum.eq_ignore_ascii_case(suffix) {
            return Err(Error::corrupt(
                key,
                "manifest checksum differs from the key's SHA-256",
            ));
        }
        let plain = self.decrypt(key).await?;
        let sha: [u8; 32] = Sha256::digest(&plain).into();
        if sha != *id.as_bytes() {
            return Err(Error::ChecksumMismatch {
                key: key.to_owned(),
                id,
            });
        }
        Ok(plain)
    }

    /// Read a message's data object, checked (the SHA-256 of its plaintext must match its key
    /// and the manifest) and parsed.
    pub async fn read_message(&self, mailbox: &str, entry: &V1Entry) -> Result<V1Payload> {
        let plain = self
            .read_checked("data", mailbox, &entry.storage_key, &entry.checksum)
            .await?;
        if entry.payload_format.as_deref().is_some_and(|f| {
            f.to_ascii_lowercase().contains("mime") || f.eq_ignore_ascii_case("eml")
        }) {
            return Ok(V1Payload::Mime(Bytes::from(plain)));
        }
        serde_json::from_slice::<GraphMessage>(&plain)
            .map(|m| V1Payload::Graph(Box::new(m)))
            .map_err(|e| Error::corrupt(&entry.storage_key, format!("message JSON: {e}")))
    }

    /// Read an attachment's bytes, checked like messages. An attachment whose content
    /// v1 never stored (empty key, e.g. a large attachment without `contentBytes`) is
    /// [`Error::Missing`].
    pub async fn read_attachment(&self, mailbox: &str, att: &V1AttachmentEntry) -> Result<Bytes> {
        if att.storage_key.is_empty() {
            return Err(Error::Missing {
                key: format!(
                    "attachments/{mailbox}/<never stored by atlas v1: {}>",
                    att.attachment_id
                ),
            });
        }
        self.read_checked("attachments", mailbox, &att.storage_key, &att.checksum)
            .await
            .map(Bytes::from)
    }

    /// Verify every manifest, message and attachment object of the repository (or of one
    /// mailbox): it exists, decrypts, and matches its checksum; messages also parse.
    /// Each damaged item is reported with mailbox, snapshot, object key and message id.
    /// Progress goes to `reporter` as [`Task::VerifyV1`](crate::ports::Task::VerifyV1),
    /// one task per mailbox (its total: the distinct objects its manifests name).
    pub async fn verify(
        &self,
        mailbox: Option<&str>,
        reporter: &dyn crate::ports::Reporter,
    ) -> Result<V1VerifyReport> {
        verify::verify(self, mailbox, reporter).await
    }
}

/// Errors that mean "this object is damaged or absent" (reported per item), as opposed
/// to the store being unreachable (which stops the operation).
pub(crate) fn is_object_damage(e: &Error) -> bool {
    e.is_integrity_failure()
        || matches!(e, Error::Missing { .. })
        || matches!(e, Error::Store(StoreError::InvalidKey { .. }))
}

/// A message rebuilt as MIME from its v1 objects.
#[derive(Debug)]
pub struct RebuiltMessage {
    /// The RFC 5322 bytes.
    pub mime: Vec<u8>,
    /// The Graph JSON it was rebuilt from (`None` for a MIME payload).
    pub graph: Option<GraphMessage>,
    /// Attachments included in `mime`.
    pub attachment_count: u32,
    /// Attachments left out because their object is damaged or was never stored
    /// (attachment id, error). The message is still usable; callers record these.
    pub attachment_errors: Vec<(String, Error)>,
}

impl V1Repository {
    /// Read one entry's message and attachments (all checked) and rebuild its MIME
    /// ([`mime::rebuild_message`]). A damaged message object is an error; a damaged
    /// attachment is left out and listed in [`RebuiltMessage::attachment_errors`].
    pub async fn rebuild_mime(&self, mailbox: &str, entry: &V1Entry) -> Result<RebuiltMessage> {
        let payload = self.read_message(mailbox, entry).await?;
        let mut attachment_errors = Vec::new();
        let mut attachments = Vec::new();
        for att in &entry.attachments {
            match self.read_attachment(mailbox, att).await {
                Ok(data) => attachments.push(mime::MimeAttachment {
                    name: att.name.clone(),
                    content_type: att.content_type.clone(),
                    content_id: att.content_id.clone(),
                    inline: att.is_inline,
                    data,
                }),
                Err(e) if is_object_damage(&e) => {
                    attachment_errors.push((att.attachment_id.clone(), e));
                }
                Err(e) => return Err(e),
            }
        }
        let attachment_count = attachments.len() as u32;
        Ok(match payload {
            V1Payload::Mime(bytes) => RebuiltMessage {
                mime: bytes.to_vec(),
                graph: None,
                attachment_count: 0,
                attachment_errors,
            },
            V1Payload::Graph(graph) => {
                let graph = *graph;
                // The MIME's Graph id seeds boundaries; v1 entries always carry it, the
                // JSON normally too.
                let mut seeded = graph.clone();
                if seeded.id.is_none() {
                    seeded.id = Some(entry.object_id.clone());
                }
                let mime = tokio::task::spawn_blocking(move || {
                    mime::rebuild_message(&seeded, &attachments)
                })
                .await
                .map_err(|e| Error::task(&e))?;
                RebuiltMessage {
                    mime,
                    graph: Some(graph),
                    attachment_count,
                    attachment_errors,
                }
            }
        })
    }
}
