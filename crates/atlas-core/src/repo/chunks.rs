//! Chunk lists: how content larger than the chunk threshold is stored.
//!
//! The content is cut into fixed-size chunks, each stored as a `Chunk` blob (deduplicated
//! on its own), and a `ChunkList` blob is stored under the content id of the *whole*
//! content, so callers see one id either way.
//!
//! Payload: `version u8 = 1 | kind u8 | total_len u64 LE | sha256[32] | count u32 LE |
//! count * (chunk id[32] | chunk_len u32 LE)`; version 2 (format 4) is the same without
//! the SHA-256: the whole content is checked by its content id, which readers recompute
//! anyway.

use super::BlobKind;
use crate::model::ContentId;

const CHUNK_LIST_VERSION: u8 = 1;
const CHUNK_LIST_VERSION_NO_SHA: u8 = 2;
const HEADER_LEN: usize = 1 + 1 + 8 + 32 + 4;
const HEADER_LEN_NO_SHA: usize = 1 + 1 + 8 + 4;
const ENTRY_LEN: usize = 32 + 4;

/// A decoded chunk list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkList {
    /// Kind of the whole content (part of its content id).
    pub(crate) kind: BlobKind,
    pub(crate) total_len: u64,
    /// SHA-256 of the whole content (version 1 only).
    pub(crate) sha256: Option<[u8; 32]>,
    pub(crate) chunks: Vec<(ContentId, u32)>,
}

impl ChunkList {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.chunks.len() * ENTRY_LEN);
        out.push(if self.sha256.is_some() {
            CHUNK_LIST_VERSION
        } else {
            CHUNK_LIST_VERSION_NO_SHA
        });
        out.push(self.kind as u8);
        out.extend_from_slice(&self.total_len.to_le_bytes());
        if let Some(sha) = &self.sha256 {
            out.extend_from_slice(sha);
        }
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (id, len) in &self.chunks {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let header_len = match bytes.first() {
            Some(&CHUNK_LIST_VERSION) => HEADER_LEN,
            Some(&CHUNK_LIST_VERSION_NO_SHA) => HEADER_LEN_NO_SHA,
            Some(v) => return Err(format!("chunk list version {v}")),
            None => return Err("chunk list shorter than its header".into()),
        };
        if bytes.len() < header_len {
            return Err("chunk list shorter than its header".into());
        }
        let kind =
            BlobKind::from_u8(bytes[1]).ok_or_else(|| format!("unknown blob kind {}", bytes[1]))?;
        let total_len =
            u64::from_le_bytes(bytes[2..10].try_into().expect("invariant: 8-byte slice"));
        let sha256: Option<[u8; 32]> = (header_len == HEADER_LEN)
            .then(|| bytes[10..42].try_into().expect("invariant: 32-byte slice"));
        let count = u32::from_le_bytes(
            bytes[header_len - 4..header_len]
                .try_into()
                .expect("invariant: 4-byte slice"),
        ) as usize;
        let body = &bytes[header_len..];
        if count.checked_mul(ENTRY_LEN) != Some(body.len()) {
            return Err(format!(
                "chunk list declares {count} chunks but holds {} bytes",
                body.len()
            ));
        }
        let chunks: Vec<(ContentId, u32)> = body
            .chunks_exact(ENTRY_LEN)
            .map(|c| {
                (
                    ContentId::from_bytes(c[..32].try_into().expect("invariant: 32-byte slice")),
                    u32::from_le_bytes(c[32..36].try_into().expect("invariant: 4-byte slice")),
                )
            })
            .collect();
        if chunks.iter().map(|c| u64::from(c.1)).sum::<u64>() != total_len {
            return Err("chunk lengths do not add up to the total".into());
        }
        Ok(Self {
            kind,
            total_len,
            sha256,
            chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let l = ChunkList {
            kind: BlobKind::Mime,
            total_len: 7,
            sha256: Some([1; 32]),
            chunks: vec![
                (ContentId::from_bytes([2; 32]), 4),
                (ContentId::from_bytes([3; 32]), 3),
            ],
        };
        assert_eq!(l.encode()[0], 1);
        assert_eq!(ChunkList::decode(&l.encode()).unwrap(), l);
        let l = ChunkList { sha256: None, ..l };
        assert_eq!(l.encode()[0], 2);
        assert_eq!(l.encode().len(), 14 + 2 * 36);
        assert_eq!(ChunkList::decode(&l.encode()).unwrap(), l);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = ChunkList::decode(&bytes);
        }
    }
}
