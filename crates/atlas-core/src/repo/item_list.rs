//! Folder item lists (docs/FORMAT.md §5.5): the records of a folder's items, stored as one
//! blob, or — for a folder of more than [`MAX_PIECE_ITEMS`] items — as pieces of at most
//! that many items, each its own blob, named in order by a piece directory (also a blob
//! of kind 3), whose id the folder entry of the snapshot record holds.
//!
//! Why pieces: a folder's list was serialized, compressed and sealed whole, so a
//! 20,000-message folder took a 16.8 MB JSON buffer plus its compressed and sealed copies
//! at the end of its backup — memory that grew with the folder's size. Pieces bound it by
//! [`MAX_PIECE_ITEMS`], and readers go through a list one piece at a time
//! ([`ItemListReader`]).
//!
//! Why a directory rather than the pieces' ids in the snapshot record: builds before
//! pieces read the folder entry's `items` as a list. Prune of such a build does not check
//! a snapshot's `formatVersion`; given a piece's id it would keep that piece's items and
//! delete the others'. Given a directory, which has no `items` field, it fails to decode
//! the list and stops without deleting anything, while every other reader of such a build
//! refuses the snapshot by its `formatVersion` ([`PIECED_FORMAT_VERSION`]).

use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Repository;
use crate::error::{Error, Result};
use crate::model::{ContentId, MessageMeta};

/// Most items one piece holds, and the largest folder whose list stays one blob. A mail
/// record is ~850 bytes of JSON, so a piece serializes to at most ~1.7 MB (with its
/// compressed and sealed copies a few MB per folder being written, whatever the folder's
/// size). Nearly every folder is smaller and keeps its list in one blob, written exactly
/// as before pieces existed (same bytes, same content id, same snapshot record).
pub const MAX_PIECE_ITEMS: usize = 2_000;

/// Below [`MAX_PIECE_ITEMS`], a piece also ends after an item whose id hashes to 0 modulo
/// this. Boundaries then follow the items rather than positions in the list (sorted by
/// id, where a new message lands anywhere): an incremental that adds or removes a few
/// messages of a large folder stores the pieces holding them and a new directory, and
/// shares every other piece with the previous snapshot. Readers do not depend on where
/// pieces end.
const CUT_ONE_IN: u64 = 1_024;

/// The `formatVersion` of a snapshot record with at least one folder whose list is stored
/// in pieces, whatever the repository's format: builds that read snapshots up to 4 refuse
/// it instead of reading a directory as a list. Also the highest snapshot format this
/// build reads.
pub const PIECED_FORMAT_VERSION: u32 = 5;

/// Version of a blob holding items (a whole list or one piece).
const ITEMS_VERSION: u32 = 1;
/// Version of a piece directory.
const DIRECTORY_VERSION: u32 = 2;

/// The JSON payload of a folder item list blob, or of one piece (serialized from a
/// borrowed slice, so a piece of a longer list is not copied).
#[derive(Serialize)]
struct FolderItems<'a> {
    version: u32,
    items: &'a [MessageMeta],
}

/// One piece as its directory names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PieceRef {
    /// Content id of the piece (a blob of kind 3 holding items).
    pub(crate) id: ContentId,
    /// Items in the piece.
    pub(crate) count: u64,
}

/// The JSON payload of a piece directory. It has no `items` field on purpose (see the
/// module docs).
#[derive(Debug, Serialize, Deserialize)]
struct PieceDirectory {
    version: u32,
    pieces: Vec<PieceRef>,
}

/// A kind-3 blob as read: items, or a directory of pieces.
#[derive(Debug)]
pub(crate) enum ListBlob {
    Items(Vec<MessageMeta>),
    Pieces(Vec<PieceRef>),
}

/// Both shapes at once, for decoding without knowing which one a blob holds.
#[derive(Deserialize)]
struct AnyListBlob {
    version: u32,
    #[serde(default)]
    items: Option<Vec<MessageMeta>>,
    #[serde(default)]
    pieces: Option<Vec<PieceRef>>,
}

/// Decode a kind-3 blob. `key` names the object holding it, for errors.
pub(crate) fn decode(bytes: &[u8], id: &ContentId, key: &str) -> Result<ListBlob> {
    let any: AnyListBlob = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(key, format!("folder item list {id}: {e}")))?;
    match (any.version, any.items, any.pieces) {
        // Lists before pieces all say 1; nothing ever wrote 0, but it was never checked.
        (v, Some(items), None) if v <= ITEMS_VERSION => Ok(ListBlob::Items(items)),
        (DIRECTORY_VERSION, None, Some(pieces)) if !pieces.is_empty() => {
            Ok(ListBlob::Pieces(pieces))
        }
        (v, _, _) if v > DIRECTORY_VERSION => Err(Error::UnsupportedVersion {
            what: "folder item list".into(),
            found: v,
            supported: DIRECTORY_VERSION,
        }),
        _ => Err(Error::corrupt(
            key,
            format!("folder item list {id}: neither items nor a piece directory"),
        )),
    }
}

/// Where a long list is cut: after every index in the returned list (exclusive ends, the
/// last one `items.len()`). Empty for a list that stays one blob.
pub(crate) fn piece_ends(items: &[MessageMeta]) -> Vec<usize> {
    if items.len() <= MAX_PIECE_ITEMS {
        return Vec::new();
    }
    let mut ends = Vec::new();
    let mut start = 0;
    for (i, m) in items.iter().enumerate() {
        let end = i + 1;
        if end - start == MAX_PIECE_ITEMS || fnv1a(m.id.as_str().as_bytes()) % CUT_ONE_IN == 0 {
            ends.push(end);
            start = end;
        }
    }
    if start < items.len() {
        ends.push(items.len());
    }
    ends
}

/// FNV-1a (64 bit): a fixed, dependency-free hash for [`piece_ends`]. Where pieces end
/// only decides what two snapshots share, so it needs no key and no strength; it must
/// stay the same between builds for unchanged pieces to keep their ids.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A folder's list as written: what its folder entry records (docs/FORMAT.md §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredItems {
    /// The content id the folder entry's `items` holds: the list, or its piece directory.
    pub id: ContentId,
    /// How many pieces the directory names; `None` for a list in one blob.
    pub pieces: Option<u32>,
}

/// The payload of a piece directory naming `pieces` in order, and how many it names.
pub(crate) fn directory(pieces: Vec<PieceRef>) -> Result<(Bytes, u32)> {
    let count = u32::try_from(pieces.len())
        .map_err(|_| Error::invalid("folder item list: too many pieces"))?;
    let json = serde_json::to_vec(&PieceDirectory {
        version: DIRECTORY_VERSION,
        pieces,
    })
    .map_err(|e| Error::invalid(format!("serialize folder item pieces: {e}")))?;
    Ok((Bytes::from(json), count))
}

/// The payload of a list in one blob, or of one piece.
pub(crate) fn serialize(items: &[MessageMeta]) -> Result<Bytes> {
    serde_json::to_vec(&FolderItems {
        version: ITEMS_VERSION,
        items,
    })
    .map(Bytes::from)
    .map_err(|e| Error::invalid(format!("serialize folder items: {e}")))
}

/// A folder's whole list with the blobs it is stored in.
#[derive(Debug)]
pub struct FolderList {
    /// Every blob of the list: its own id first (the list, or the piece directory), then
    /// the pieces in order. What reachability (prune, copy, Object Lock, verify) follows.
    pub blobs: Vec<ContentId>,
    /// Every item, in list order.
    pub items: Vec<MessageMeta>,
}

/// Reads a folder's item list one piece at a time ([`Repository::item_list`]): a reader
/// that handles items one by one holds one piece's records, not the folder's. A list
/// stored in one blob is one piece, under its own id.
#[derive(Debug)]
pub struct ItemListReader<'r> {
    repo: &'r Repository,
    list: ContentId,
    /// `None` until the list's own blob is read; then the pieces not read yet.
    pending: Option<VecDeque<PieceRef>>,
}

impl ItemListReader<'_> {
    /// The next piece: the id of its blob and its items; `None` after the last one.
    pub async fn next_piece(&mut self) -> Result<Option<(ContentId, Vec<MessageMeta>)>> {
        // Boxed: reading a blob is a large future, and every reader that goes through a
        // list piece by piece (save, list, stats) would carry it in its own.
        Box::pin(self.read_next()).await
    }

    async fn read_next(&mut self) -> Result<Option<(ContentId, Vec<MessageMeta>)>> {
        let pending = match &mut self.pending {
            Some(p) => p,
            None => match self.repo.read_list_blob(&self.list).await? {
                ListBlob::Items(items) => {
                    self.pending = Some(VecDeque::new());
                    return Ok(Some((self.list, items)));
                }
                ListBlob::Pieces(p) => self.pending.insert(p.into()),
            },
        };
        let Some(piece) = pending.pop_front() else {
            return Ok(None);
        };
        let what = || format!("folder item list {}: piece {}", self.list, piece.id);
        match self.repo.read_list_blob(&piece.id).await? {
            ListBlob::Items(items) if items.len() as u64 == piece.count => {
                Ok(Some((piece.id, items)))
            }
            ListBlob::Items(items) => Err(Error::corrupt(
                self.repo.pack_key_of(&piece.id).await,
                format!(
                    "{}: {} items where its directory says {}",
                    what(),
                    items.len(),
                    piece.count
                ),
            )),
            ListBlob::Pieces(_) => Err(Error::corrupt(
                self.repo.pack_key_of(&piece.id).await,
                format!("{}: a piece directory, not items", what()),
            )),
        }
    }

    /// Whether the list's own blob (the list, or its piece directory) has been read: an
    /// error after that is about one piece, and the pieces after it can still be read.
    pub fn listed(&self) -> bool {
        self.pending.is_some()
    }

    /// Every remaining item and the blobs they came from, joined.
    pub async fn read_all(mut self) -> Result<FolderList> {
        let mut out = FolderList {
            blobs: vec![self.list],
            items: Vec::new(),
        };
        while let Some((piece, items)) = self.next_piece().await? {
            if piece != self.list {
                out.blobs.push(piece);
            }
            out.items.extend(items);
        }
        Ok(out)
    }
}

impl Repository {
    /// Read a folder item list (the id a folder entry's `items` holds) piece by piece.
    pub fn item_list(&self, id: &ContentId) -> ItemListReader<'_> {
        ItemListReader {
            repo: self,
            list: *id,
            pending: None,
        }
    }

    /// Load a folder item list whole, pieces joined.
    pub async fn load_folder_items(&self, id: &ContentId) -> Result<Vec<MessageMeta>> {
        Ok(self.item_list(id).read_all().await?.items)
    }

    /// Load a folder item list whole, with every blob it is stored in (for readers that
    /// follow references: prune, copy, Object Lock, verify).
    pub async fn load_folder_list(&self, id: &ContentId) -> Result<FolderList> {
        self.item_list(id).read_all().await
    }

    /// Read and decode one kind-3 blob.
    async fn read_list_blob(&self, id: &ContentId) -> Result<ListBlob> {
        let bytes = self.read_blob(id).await?;
        decode(&bytes, id, &self.pack_key_of(id).await)
    }

    /// The store key of the pack holding `id`, for naming it in an error.
    async fn pack_key_of(&self, id: &ContentId) -> String {
        match self.locate(id).await {
            Ok(loc) => loc.pack.store_key(),
            Err(_) => format!("content {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(ids: impl IntoIterator<Item = String>) -> Vec<MessageMeta> {
        ids.into_iter()
            .map(|id| {
                let m: MessageMeta = serde_json::from_value(serde_json::json!({
                    "id": id, "parentFolderId": "f", "subject": "A subject of some length",
                    "mime": ContentId::from_bytes([7; 32]), "mimeSize": 1, "mimeSha256": ""
                }))
                .unwrap();
                m
            })
            .collect()
    }

    fn numbered(range: std::ops::Range<usize>) -> Vec<MessageMeta> {
        let mut v = items(range.map(|n| format!("AAMkAGI2-{n:08}")));
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The ids of each piece, as `piece_ends` cuts `list`.
    fn pieces(list: &[MessageMeta]) -> Vec<Vec<String>> {
        let mut start = 0;
        piece_ends(list)
            .into_iter()
            .map(|end| {
                let p = list[start..end]
                    .iter()
                    .map(|m| m.id.as_str().to_owned())
                    .collect();
                start = end;
                p
            })
            .collect()
    }

    /// What builds before pieces wrote (an owned list): a list of up to
    /// `MAX_PIECE_ITEMS` items must serialize to exactly these bytes, so its content id
    /// and the snapshots naming it do not change.
    #[derive(Serialize, Deserialize)]
    struct ListBeforePieces {
        version: u32,
        items: Vec<MessageMeta>,
    }

    #[test]
    fn a_list_of_up_to_max_piece_items_is_one_blob_with_the_bytes_written_before_pieces() {
        let list = numbered(0..MAX_PIECE_ITEMS);
        assert!(piece_ends(&list).is_empty());
        let before = serde_json::to_vec(&ListBeforePieces {
            version: 1,
            items: list.clone(),
        })
        .unwrap();
        assert_eq!(serialize(&list).unwrap(), before);
    }

    #[test]
    fn a_longer_list_is_cut_into_bounded_pieces_that_cover_it_in_order() {
        let list = numbered(0..10_000);
        let cut = pieces(&list);
        assert!(cut.len() >= 5, "{} pieces", cut.len());
        assert!(
            cut.iter()
                .all(|p| !p.is_empty() && p.len() <= MAX_PIECE_ITEMS)
        );
        let joined: Vec<String> = cut.concat();
        let want: Vec<String> = list.iter().map(|m| m.id.as_str().to_owned()).collect();
        assert_eq!(joined, want);
    }

    /// Cuts follow the items: a message added to (or removed from) a long list changes
    /// the piece holding it, and at most the one after it (when the change moves a
    /// forced cut), not every piece after it.
    #[test]
    fn adding_or_removing_an_item_changes_at_most_two_pieces() {
        let list = numbered(0..10_000);
        let before: std::collections::BTreeSet<Vec<String>> = pieces(&list).into_iter().collect();
        let mut added = list.clone();
        added.extend(items([String::from("AAMkAGI2-00004999x")]));
        added.sort_by(|a, b| a.id.cmp(&b.id));
        let mut removed = list.clone();
        removed.remove(2_500);
        for changed in [added, removed] {
            let after = pieces(&changed);
            let new = after.iter().filter(|p| !before.contains(*p)).count();
            assert!(new <= 2, "{new} of {} pieces changed", after.len());
        }
    }

    #[test]
    fn a_piece_directory_reads_back_and_is_not_a_list_to_a_build_before_pieces() {
        let refs = vec![
            PieceRef {
                id: ContentId::from_bytes([1; 32]),
                count: 2_000,
            },
            PieceRef {
                id: ContentId::from_bytes([2; 32]),
                count: 17,
            },
        ];
        let (json, count) = directory(refs.clone()).unwrap();
        assert_eq!(count, 2);
        let id = ContentId::from_bytes([3; 32]);
        match decode(&json, &id, "packs/x").unwrap() {
            ListBlob::Pieces(p) => assert_eq!(p, refs),
            ListBlob::Items(_) => panic!("a directory read as items"),
        }
        assert!(serde_json::from_slice::<ListBeforePieces>(&json).is_err());
        // A list still decodes as items; a newer layout is refused, not guessed at.
        let list = serialize(&numbered(0..3)).unwrap();
        assert!(matches!(
            decode(&list, &id, "k").unwrap(),
            ListBlob::Items(v) if v.len() == 3
        ));
        assert!(matches!(
            decode(br#"{"version":3,"pieces":[]}"#, &id, "k"),
            Err(Error::UnsupportedVersion { found: 3, .. })
        ));
    }
}
