//! Blob reads: locate content through the index, fetch its bytes from its pack, and
//! check every layer (AEAD tag, plaintext checksum, content id; chunked content is
//! reassembled and checked as a whole).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::chunks::ChunkList;
use super::index::Location;
use super::layout::store_key;
use super::pack::{self, PackEntry, PackId};
use super::secret::RepoKeys;
use super::{BlobKind, BlobReader, ContentCheck, Repository, crypto};
use crate::error::{Error, Result};
use crate::model::ContentId;

impl Repository {
    /// Read content by id: checks the AEAD tag, the plaintext checksum and the content id,
    /// and reassembles chunked content.
    pub async fn read_blob(&self, id: &ContentId) -> Result<Bytes> {
        let loc = self.locate(id).await?;
        if loc.kind == BlobKind::ChunkList {
            let list_bytes = self.read_located(id, loc, false).await?;
            let key = loc.pack.store_key();
            let list = ChunkList::decode(&list_bytes).map_err(|r| Error::corrupt(&key, r))?;
            let mut out =
                Vec::with_capacity(usize::try_from(list.total_len).unwrap_or(0).min(1 << 30));
            for (chunk_id, len) in &list.chunks {
                let cloc = self.locate(chunk_id).await?;
                if cloc.kind != BlobKind::Chunk {
                    return Err(Error::corrupt(
                        cloc.pack.store_key(),
                        format!("chunk {chunk_id} indexed as {:?}", cloc.kind),
                    ));
                }
                let chunk = self.read_located(chunk_id, cloc, true).await?;
                if chunk.len() != *len as usize {
                    return Err(Error::ChecksumMismatch {
                        key: cloc.pack.store_key(),
                        id: *chunk_id,
                    });
                }
                out.extend_from_slice(&chunk);
            }
            let keys = self.keys();
            let id = *id;
            return tokio::task::spawn_blocking(move || {
                // A version-1 list keeps the whole content's SHA-256: still checked.
                let sha_ok = list.sha256.is_none_or(|want| {
                    let sha: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
                        <sha2::Sha256 as sha2::Digest>::new(),
                        &out,
                    ))
                    .into();
                    sha == want
                });
                if !sha_ok
                    || out.len() as u64 != list.total_len
                    || crypto::content_id(&keys.id, list.kind, &out) != id
                {
                    return Err(Error::ChecksumMismatch { key, id });
                }
                Ok(Bytes::from(out))
            })
            .await
            .map_err(|e| Error::task(&e))?;
        }
        self.read_located(id, loc, true).await
    }

    /// Read content piece by piece (one chunk at a time for chunked content), with the
    /// same checks as [`Repository::read_blob`]; see [`BlobReader`].
    pub async fn read_blob_stream(&self, id: &ContentId) -> Result<BlobReader> {
        BlobReader::open(self, id).await
    }

    /// Fetch and open one blob; `check_id` recomputes the content id (not possible for a
    /// chunk list, whose id covers the whole content).
    pub(super) async fn read_located(
        &self,
        id: &ContentId,
        loc: Location,
        check_id: bool,
    ) -> Result<Bytes> {
        let key = loc.pack.store_key();
        let range = u64::from(loc.offset)..u64::from(loc.offset) + u64::from(loc.length);
        let bytes = self
            .inner
            .store
            .get_range(&store_key(&key)?, range)
            .await
            .map_err(Error::from_store_required)?;
        if bytes.len() != loc.length as usize {
            return Err(Error::Truncated {
                key,
                expected: u64::from(loc.length),
                actual: bytes.len() as u64,
            });
        }
        let keys = self.keys();
        let id = *id;
        tokio::task::spawn_blocking(move || {
            open_sealed_blob(&keys, &id, loc, &bytes, check_id, key).map(Bytes::from)
        })
        .await
        .map_err(|e| Error::task(&e))?
    }

    /// Read a whole pack and return its table (after checking header, length, trailer and
    /// the table's tag). Lets tools rebuild an index from packs alone.
    pub async fn pack_table(&self, pack: PackId) -> Result<Vec<PackEntry>> {
        let bytes = self.get_required(&pack.store_key()).await?;
        let keys = self.keys();
        tokio::task::spawn_blocking(move || pack::parse_pack(&keys.enc, pack, &bytes))
            .await
            .map_err(|e| Error::task(&e))?
    }

    /// Read a whole pack (one store request) to check many of its blobs from memory; see
    /// [`PackData`]. Verify and repair read packs this way: one GET per pack instead of
    /// one per blob, which is what dominates on S3.
    pub async fn read_pack(&self, pack: PackId) -> Result<PackData> {
        let bytes = self.get_required(&pack.store_key()).await?;
        Ok(PackData {
            pack,
            bytes,
            keys: self.keys(),
        })
    }

    /// The chunk ids behind a content id, in order (empty unless it is stored chunked).
    pub async fn chunk_ids(&self, id: &ContentId) -> Result<Vec<ContentId>> {
        let loc = self.locate(id).await?;
        if loc.kind != BlobKind::ChunkList {
            return Ok(Vec::new());
        }
        let bytes = self.read_located(id, loc, false).await?;
        let list =
            ChunkList::decode(&bytes).map_err(|r| Error::corrupt(loc.pack.store_key(), r))?;
        Ok(list.chunks.into_iter().map(|(c, _)| c).collect())
    }

    /// Every pack in the store with its stored size, from the listing only.
    pub async fn pack_sizes(&self) -> Result<HashMap<PackId, u64>> {
        Ok(self
            .inner
            .store
            .list(super::layout::PACK_PREFIX)
            .await?
            .iter()
            .filter_map(|m| PackId::from_store_key(m.key.as_str()).map(|p| (p, m.size)))
            .collect())
    }

    /// Every pack in the store.
    pub async fn list_packs(&self) -> Result<Vec<PackId>> {
        Ok(self
            .inner
            .store
            .list(super::layout::PACK_PREFIX)
            .await?
            .iter()
            .filter_map(|m| PackId::from_store_key(m.key.as_str()))
            .collect())
    }
}

/// A pack read whole ([`Repository::read_pack`]). Its checks are CPU-bound: call them
/// from a blocking task.
pub struct PackData {
    pack: PackId,
    bytes: Bytes,
    keys: Arc<RepoKeys>,
}

impl std::fmt::Debug for PackData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackData")
            .field("pack", &self.pack)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl PackData {
    /// The pack.
    pub fn pack(&self) -> PackId {
        self.pack
    }

    /// Stored bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the pack is empty (never for a valid pack).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Check header, declared length, trailer and the table's tag; return the table.
    pub fn table(&self) -> Result<Vec<PackEntry>> {
        pack::parse_pack(&self.keys.enc, self.pack, &self.bytes)
    }

    /// Open the blob `id` at `loc` (AEAD tag, frame checksum, and the content id unless
    /// `loc` is a chunk list, whose id covers the whole content).
    pub fn open_blob(&self, id: &ContentId, loc: Location) -> Result<Vec<u8>> {
        open_blob_in_pack(
            &self.keys,
            &self.bytes,
            id,
            loc,
            loc.kind != BlobKind::ChunkList,
        )
    }

    /// Check the blob `id` at `loc` without keeping its plaintext (see
    /// `crypto::check_blob`): what verify needs, at less cost. The AEAD tag and the frame
    /// always; the plaintext by the frame's own checksum where it has one, or by its
    /// content id, as `depth` says ([`ContentCheck`]).
    pub fn check_blob(&self, id: &ContentId, loc: Location, depth: ContentCheck) -> Result<()> {
        let key = loc.pack.store_key();
        let start = loc.offset as usize;
        let Some(sealed) = self.bytes.get(start..start + loc.length as usize) else {
            return Err(Error::Truncated {
                key,
                expected: u64::from(loc.length),
                actual: self.bytes.len().saturating_sub(start) as u64,
            });
        };
        let check = crypto::BlobCheck {
            id_key: (loc.kind != BlobKind::ChunkList).then_some(&*self.keys.id),
            depth,
        };
        crypto::check_blob(&self.keys.enc, check, loc.kind, id, sealed, &key)
    }
}

/// Open one blob out of the bytes of its whole pack, with the same checks as a ranged
/// read (length, AEAD tag, and the content id when `check_id`). Verify reads each pack once
/// and checks every blob it needs from that buffer: one store request per pack instead of
/// one per blob, which is what dominates on S3. CPU-bound: call it from a blocking task.
pub(crate) fn open_blob_in_pack(
    keys: &RepoKeys,
    pack_bytes: &[u8],
    id: &ContentId,
    loc: Location,
    check_id: bool,
) -> Result<Vec<u8>> {
    let key = loc.pack.store_key();
    let start = loc.offset as usize;
    let Some(sealed) = pack_bytes.get(start..start + loc.length as usize) else {
        return Err(Error::Truncated {
            key,
            expected: u64::from(loc.length),
            actual: pack_bytes.len().saturating_sub(start) as u64,
        });
    };
    open_sealed_blob(keys, id, loc, sealed, check_id, key)
}

/// Decrypt one blob's sealed bytes and, when `check_id`, recompute its content id.
fn open_sealed_blob(
    keys: &RepoKeys,
    id: &ContentId,
    loc: Location,
    sealed: &[u8],
    check_id: bool,
    key: String,
) -> Result<Vec<u8>> {
    let plain = crypto::open_blob(&keys.enc, loc.kind, id, sealed, &key)?;
    if check_id && crypto::content_id(&keys.id, loc.kind, &plain) != *id {
        return Err(Error::ChecksumMismatch { key, id: *id });
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::DataKey;
    use crate::repo::crypto::FrameChecksum;
    use crate::repo::pack::PackId;

    /// A format-4 blob has no frame checksum: a plaintext that differs from what its id
    /// names (flipped before encryption, e.g. by a bug or bad memory) must still be caught,
    /// by the content id the reader recomputes.
    #[test]
    fn a_flipped_plaintext_byte_is_caught_by_the_content_id() {
        let keys = RepoKeys::derive(DataKey::from_bytes([9; 32]));
        let id = crypto::content_id(&keys.id, BlobKind::Mime, b"the message");
        let sealed = crypto::seal_blob_with(
            &keys.enc,
            BlobKind::Mime,
            &id,
            b"the messagE",
            FrameChecksum::None,
        );
        let loc = Location {
            kind: BlobKind::Mime,
            pack: PackId::random(),
            offset: 0,
            length: sealed.len() as u32,
        };
        assert!(matches!(
            open_sealed_blob(&keys, &id, loc, &sealed, true, "p".into()),
            Err(Error::ChecksumMismatch { .. })
        ));
        let good = crypto::seal_blob_with(
            &keys.enc,
            BlobKind::Mime,
            &id,
            b"the message",
            FrameChecksum::None,
        );
        assert_eq!(
            open_sealed_blob(&keys, &id, loc, &good, true, "p".into()).unwrap(),
            b"the message"
        );
    }
}
