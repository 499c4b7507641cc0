//! Streaming reads: content handed out chunk by chunk, so reading (restoring, exporting)
//! a 150 MB message never holds more than one chunk of it.
//!
//! Each chunk is authenticated on its own (AEAD tag, frame checksum, and its content id,
//! an HMAC of the chunk), so every piece handed out is genuine repository data. What a
//! single chunk cannot prove is that the pieces are the whole content in the right order:
//! the reader checks total length and the content id of the whole (and the SHA-256 that
//! chunk lists written before format 4 keep) before it
//! returns the *last* piece, so a caller that writes pieces out must treat its output as
//! incomplete until `next_chunk` has returned `Ok(None)`.

use std::collections::VecDeque;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::chunks::ChunkList;
use super::{BlobKind, Repository};
use crate::error::{Error, Result};
use crate::model::ContentId;

/// Reads one piece of content chunk by chunk; see the module docs and
/// [`Repository::read_blob_stream`].
#[derive(Debug)]
pub struct BlobReader {
    repo: Repository,
    id: ContentId,
    /// Unchunked content: read whole (it is at most the chunk threshold) on first call.
    single: bool,
    done: bool,
    list: Option<ChunkList>,
    remaining: VecDeque<(ContentId, u32)>,
    mac: Hmac<Sha256>,
    /// Only for chunk lists that keep the whole content's SHA-256 (before format 4).
    sha: Option<Sha256>,
    seen: u64,
    key: String,
}

impl BlobReader {
    pub(crate) async fn open(repo: &Repository, id: &ContentId) -> Result<Self> {
        let loc = repo.locate(id).await?;
        let key = loc.pack.store_key();
        let mut list = None;
        let mut sha = None;
        let mut remaining = VecDeque::new();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&repo.keys().id[..])
            .expect("invariant: HMAC takes any key length");
        if loc.kind == BlobKind::ChunkList {
            let bytes = repo.read_located(id, loc, false).await?;
            let l = ChunkList::decode(&bytes).map_err(|r| Error::corrupt(&key, r))?;
            mac.update(&[l.kind as u8]);
            sha = l.sha256.map(|_| Sha256::new());
            remaining = l.chunks.iter().copied().collect();
            list = Some(l);
        }
        Ok(Self {
            repo: repo.clone(),
            id: *id,
            single: loc.kind != BlobKind::ChunkList,
            done: false,
            list,
            remaining,
            mac,
            sha,
            seen: 0,
            key,
        })
    }

    /// Total length of the content, when known before reading (chunked content).
    pub fn total_len(&self) -> Option<u64> {
        self.list.as_ref().map(|l| l.total_len)
    }

    /// The next piece, `Ok(None)` at the end. The last piece is returned only after the
    /// whole content checked out.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        if self.single {
            self.done = true;
            return self.repo.read_blob(&self.id).await.map(Some);
        }
        let Some((chunk_id, len)) = self.remaining.pop_front() else {
            self.done = true;
            return self.check_whole().map(|()| None);
        };
        let loc = self.repo.locate(&chunk_id).await?;
        if loc.kind != BlobKind::Chunk {
            return Err(Error::corrupt(
                loc.pack.store_key(),
                format!("chunk {chunk_id} indexed as {:?}", loc.kind),
            ));
        }
        let chunk = self.repo.read_located(&chunk_id, loc, true).await?;
        if chunk.len() != len as usize {
            return Err(Error::ChecksumMismatch {
                key: loc.pack.store_key(),
                id: chunk_id,
            });
        }
        self.mac.update(&chunk);
        if let Some(sha) = &mut self.sha {
            sha.update(&chunk);
        }
        self.seen += chunk.len() as u64;
        if self.remaining.is_empty() {
            self.done = true;
            self.check_whole()?;
        }
        Ok(Some(chunk))
    }

    fn check_whole(&self) -> Result<()> {
        let list = self
            .list
            .as_ref()
            .expect("invariant: chunked reader has a list");
        let sha: Option<[u8; 32]> = self.sha.clone().map(|s| s.finalize().into());
        let id = ContentId::from_bytes(self.mac.clone().finalize().into_bytes().into());
        if self.seen != list.total_len || sha != list.sha256 || id != self.id {
            return Err(Error::ChecksumMismatch {
                key: self.key.clone(),
                id: self.id,
            });
        }
        Ok(())
    }
}
