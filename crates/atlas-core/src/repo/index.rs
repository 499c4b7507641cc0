//! The index: content id → (pack, offset, length, kind).
//!
//! Each flush of a backup session writes one index file covering the packs it sealed
//! (`index/<32 hex>`, sealed object of type Index). The repository index is the union of
//! all index files; it is what dedup asks and what reads use to find blobs.

use std::collections::HashMap;

use super::BlobKind;
use super::pack::{PackId, versioned_body};
use crate::model::ContentId;

const INDEX_VERSION: u8 = 1;
/// `id[32] | kind u8 | pack[16] | offset u32 LE | length u32 LE`.
const INDEX_ENTRY_LEN: usize = 32 + 1 + 16 + 4 + 4;

/// Where one blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Blob kind (for chunked content: `ChunkList`).
    pub kind: BlobKind,
    /// Pack holding it.
    pub pack: PackId,
    /// Offset in the pack.
    pub offset: u32,
    /// Encrypted length.
    pub length: u32,
}

/// One index row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Content id.
    pub id: ContentId,
    /// Where it is.
    pub location: Location,
}

/// Encode index entries (before sealing).
pub fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + entries.len() * INDEX_ENTRY_LEN);
    out.push(INDEX_VERSION);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(e.id.as_bytes());
        out.push(e.location.kind as u8);
        out.extend_from_slice(&e.location.pack.0);
        out.extend_from_slice(&e.location.offset.to_le_bytes());
        out.extend_from_slice(&e.location.length.to_le_bytes());
    }
    out
}

/// Decode index entries; the error says what is wrong.
pub fn decode_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, String> {
    let body = versioned_body(bytes, INDEX_VERSION, INDEX_ENTRY_LEN, "index")?;
    body.chunks_exact(INDEX_ENTRY_LEN)
        .map(|c| {
            Ok(IndexEntry {
                id: ContentId::from_bytes(c[..32].try_into().expect("invariant: 32-byte slice")),
                location: Location {
                    kind: BlobKind::from_u8(c[32])
                        .ok_or_else(|| format!("unknown blob kind {}", c[32]))?,
                    pack: PackId(c[33..49].try_into().expect("invariant: 16-byte slice")),
                    offset: u32::from_le_bytes(
                        c[49..53].try_into().expect("invariant: 4-byte slice"),
                    ),
                    length: u32::from_le_bytes(
                        c[53..57].try_into().expect("invariant: 4-byte slice"),
                    ),
                },
            })
        })
        .collect()
}

/// The in-memory union of index files.
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    pub(crate) map: HashMap<ContentId, Location>,
    /// Index files already merged (store keys), so a refresh reads only new ones.
    pub(crate) files: std::collections::HashSet<String>,
    /// Index files that could not be read (skipped, reported by verify).
    pub(crate) bad: std::collections::BTreeSet<String>,
}

impl Index {
    pub(crate) fn get(&self, id: &ContentId) -> Option<Location> {
        self.map.get(id).copied()
    }

    pub(crate) fn insert_all(&mut self, entries: &[IndexEntry]) {
        for e in entries {
            self.map.insert(e.id, e.location);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry_strategy() -> impl Strategy<Value = IndexEntry> {
        (
            any::<[u8; 32]>(),
            prop::sample::select(BlobKind::ALL.to_vec()),
            any::<[u8; 16]>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(id, kind, pack, offset, length)| IndexEntry {
                id: ContentId::from_bytes(id),
                location: Location {
                    kind,
                    pack: PackId(pack),
                    offset,
                    length,
                },
            })
    }

    proptest! {
        #[test]
        fn index_round_trips(entries in prop::collection::vec(entry_strategy(), 0..50)) {
            prop_assert_eq!(decode_index(&encode_index(&entries)).unwrap(), entries);
        }

        #[test]
        fn index_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_index(&bytes);
        }

        #[test]
        fn index_decode_of_mutated_valid_bytes_never_panics(
            entries in prop::collection::vec(entry_strategy(), 1..5),
            pos in any::<prop::sample::Index>(),
            val in any::<u8>(),
        ) {
            let mut bytes = encode_index(&entries);
            let i = pos.index(bytes.len());
            bytes[i] = val;
            let _ = decode_index(&bytes);
        }
    }
}
