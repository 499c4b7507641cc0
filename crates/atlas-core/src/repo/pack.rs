//! Pack files: many encrypted blobs in one store object, with an encrypted table at the
//! end so a pack can be read (and an index rebuilt) on its own.
//!
//! ```text
//! "ATLP" | version u8 = 1 | pack_len u64 LE        (13-byte header)
//! blob 0 | blob 1 | …                              (each: nonce | AES-GCM(frame) | tag)
//! table                                            (sealed object, type PackTable)
//! table_len u32 LE | "ATLT"                        (8-byte trailer)
//! ```

use std::fmt;

use super::BlobKind;
use super::crypto::{ObjectType, open_object, seal_object};
use crate::error::{Error, Result};
use crate::model::ContentId;

const PACK_MAGIC: &[u8; 4] = b"ATLP";
const TRAILER_MAGIC: &[u8; 4] = b"ATLT";
const PACK_VERSION: u8 = 1;
pub(crate) const PACK_HEADER_LEN: usize = 4 + 1 + 8;
pub(crate) const PACK_TRAILER_LEN: usize = 4 + 4;
const TABLE_VERSION: u8 = 1;
/// `id[32] | kind u8 | offset u32 LE | length u32 LE`.
pub(crate) const TABLE_ENTRY_LEN: usize = 32 + 1 + 4 + 4;

/// A pack's name: 16 random bytes, hex in the store key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackId(pub(crate) [u8; 16]);

impl PackId {
    pub(crate) fn random() -> Self {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        Self(b)
    }

    /// The store key: `packs/<first two hex digits>/<32 hex digits>` (the fan-out keeps
    /// local directories small).
    pub fn store_key(&self) -> String {
        let h = hex::encode(self.0);
        format!("packs/{}/{h}", &h[..2])
    }

    /// Parse the hex name from a store key's last segment.
    pub fn from_store_key(key: &str) -> Option<Self> {
        let name = key.strip_prefix("packs/")?.rsplit('/').next()?;
        let mut b = [0u8; 16];
        hex::decode_to_slice(name, &mut b).ok()?;
        Some(Self(b))
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({})", hex::encode(self.0))
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// One row of a pack table: where a blob sits inside its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Content id (AAD of the blob).
    pub id: ContentId,
    /// Blob kind (AAD of the blob).
    pub kind: BlobKind,
    /// Byte offset of the blob in the pack.
    pub offset: u32,
    /// Encrypted length of the blob (nonce + ciphertext + tag).
    pub length: u32,
}

/// Encode a table payload (before sealing).
pub fn encode_table(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + entries.len() * TABLE_ENTRY_LEN);
    out.push(TABLE_VERSION);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(e.id.as_bytes());
        out.push(e.kind as u8);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.length.to_le_bytes());
    }
    out
}

/// Decode a table payload; the error says what is wrong.
pub fn decode_table(bytes: &[u8]) -> std::result::Result<Vec<PackEntry>, String> {
    let body = versioned_body(bytes, TABLE_VERSION, TABLE_ENTRY_LEN, "pack table")?;
    body.chunks_exact(TABLE_ENTRY_LEN)
        .map(|c| {
            Ok(PackEntry {
                id: ContentId::from_bytes(c[..32].try_into().expect("invariant: 32-byte slice")),
                kind: BlobKind::from_u8(c[32])
                    .ok_or_else(|| format!("unknown blob kind {}", c[32]))?,
                offset: u32::from_le_bytes(c[33..37].try_into().expect("invariant: 4-byte slice")),
                length: u32::from_le_bytes(c[37..41].try_into().expect("invariant: 4-byte slice")),
            })
        })
        .collect()
}

/// Check `version u8 | count u32 LE | count * entry_len bytes` and return the entries.
pub(crate) fn versioned_body<'a>(
    bytes: &'a [u8],
    version: u8,
    entry_len: usize,
    what: &str,
) -> std::result::Result<&'a [u8], String> {
    if bytes.len() < 5 {
        return Err(format!("{what} shorter than its header"));
    }
    if bytes[0] != version {
        return Err(format!("{what} version {} (expected {version})", bytes[0]));
    }
    let count =
        u32::from_le_bytes(bytes[1..5].try_into().expect("invariant: 4-byte slice")) as usize;
    let body = &bytes[5..];
    if count.checked_mul(entry_len) != Some(body.len()) {
        return Err(format!(
            "{what} declares {count} entries but holds {} bytes",
            body.len()
        ));
    }
    Ok(body)
}

/// A pack assembled in place: sealed blobs are appended to one buffer that already has
/// room for the header, and sealing appends the table and trailer and fills in the header.
/// The buffer is the upload body, so a pack is never copied after its blobs are written.
#[derive(Debug)]
pub(crate) struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// An empty pack; `capacity` is reserved up front (untouched pages cost no memory).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self::with_buffer(Vec::with_capacity(capacity.max(PACK_HEADER_LEN)))
    }

    /// An empty pack in `buf`, a buffer of an earlier pack (its contents are dropped,
    /// its capacity kept): see the pack writer's buffer reuse.
    pub(crate) fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0u8; PACK_HEADER_LEN]);
        Self {
            buf,
            entries: Vec::new(),
        }
    }

    /// Whether no blob was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the blobs added so far.
    pub(crate) fn blob_bytes(&self) -> usize {
        self.buf.len() - PACK_HEADER_LEN
    }

    /// Append one sealed blob.
    pub(crate) fn push(&mut self, id: ContentId, kind: BlobKind, sealed: &[u8]) -> Result<()> {
        let too_big = || Error::invalid("pack larger than 4 GiB");
        self.entries.push(PackEntry {
            id,
            kind,
            offset: u32::try_from(self.buf.len()).map_err(|_| too_big())?,
            length: u32::try_from(sealed.len()).map_err(|_| too_big())?,
        });
        self.buf.extend_from_slice(sealed);
        Ok(())
    }

    /// Seal the table, append it and the trailer, fill in the header. Returns the pack's
    /// bytes and its table entries.
    pub(crate) fn finish(
        mut self,
        enc_key: &[u8; 32],
        pack: PackId,
    ) -> Result<(Vec<u8>, Vec<PackEntry>)> {
        // The table's sealed length depends only on the entry count (frames may compress,
        // so seal first with a provisional header and again if the total changed).
        let key = pack.store_key();
        let blob_end = self.buf.len();
        let mut total = 0usize;
        loop {
            let header = pack_header(total as u64);
            let context = [key.as_bytes(), &header].concat();
            let table = seal_object(
                enc_key,
                ObjectType::PackTable,
                &context,
                &encode_table(&self.entries),
            );
            let new_total = blob_end + table.len() + PACK_TRAILER_LEN;
            if new_total == total {
                let table_len = u32::try_from(table.len())
                    .map_err(|_| Error::invalid("pack table larger than 4 GiB"))?;
                self.buf[..PACK_HEADER_LEN].copy_from_slice(&header);
                self.buf.extend_from_slice(&table);
                self.buf.extend_from_slice(&table_len.to_le_bytes());
                self.buf.extend_from_slice(TRAILER_MAGIC);
                return Ok((self.buf, self.entries));
            }
            total = new_total;
        }
    }
}

/// Assemble a pack from encrypted blobs. Returns the bytes and the table entries.
pub(crate) fn build_pack(
    enc_key: &[u8; 32],
    pack: PackId,
    blobs: &[(ContentId, BlobKind, Vec<u8>)],
) -> Result<(Vec<u8>, Vec<PackEntry>)> {
    let blob_bytes: usize = blobs.iter().map(|b| b.2.len()).sum();
    let mut builder = PackBuilder::with_capacity(PACK_HEADER_LEN + blob_bytes + 4096);
    for (id, kind, bytes) in blobs {
        builder.push(*id, *kind, bytes)?;
    }
    builder.finish(enc_key, pack)
}

fn pack_header(total: u64) -> [u8; PACK_HEADER_LEN] {
    let mut h = [0u8; PACK_HEADER_LEN];
    h[..4].copy_from_slice(PACK_MAGIC);
    h[4] = PACK_VERSION;
    h[5..].copy_from_slice(&total.to_le_bytes());
    h
}

/// Parse a whole pack: header, declared length, trailer, sealed table, entry bounds.
pub(crate) fn parse_pack(enc_key: &[u8; 32], pack: PackId, bytes: &[u8]) -> Result<Vec<PackEntry>> {
    let key = pack.store_key();
    if bytes.len() < PACK_HEADER_LEN || &bytes[..4] != PACK_MAGIC {
        return Err(Error::corrupt(&key, "bad pack header"));
    }
    if bytes[4] != PACK_VERSION {
        return Err(Error::UnsupportedVersion {
            what: format!("pack {key}"),
            found: u32::from(bytes[4]),
            supported: u32::from(PACK_VERSION),
        });
    }
    let declared = u64::from_le_bytes(bytes[5..13].try_into().expect("invariant: 8-byte slice"));
    let actual = bytes.len() as u64;
    if actual < declared {
        return Err(Error::Truncated {
            key,
            expected: declared,
            actual,
        });
    }
    if actual > declared || bytes.len() < PACK_HEADER_LEN + PACK_TRAILER_LEN {
        return Err(Error::corrupt(
            &key,
            format!("{actual} bytes where the header says {declared}"),
        ));
    }
    let trailer = &bytes[bytes.len() - PACK_TRAILER_LEN..];
    if &trailer[4..] != TRAILER_MAGIC {
        return Err(Error::corrupt(&key, "bad pack trailer"));
    }
    let table_len =
        u32::from_le_bytes(trailer[..4].try_into().expect("invariant: 4-byte slice")) as usize;
    let table_end = bytes.len() - PACK_TRAILER_LEN;
    let table_start = table_end
        .checked_sub(table_len)
        .filter(|s| *s >= PACK_HEADER_LEN)
        .ok_or_else(|| Error::corrupt(&key, "pack table length out of range"))?;
    let context = [key.as_bytes(), &bytes[..PACK_HEADER_LEN]].concat();
    let table = open_object(
        enc_key,
        ObjectType::PackTable,
        &context,
        &bytes[table_start..table_end],
        &key,
    )?;
    let entries = decode_table(&table).map_err(|r| Error::corrupt(&key, r))?;
    for e in &entries {
        let end = e.offset as usize + e.length as usize;
        if (e.offset as usize) < PACK_HEADER_LEN || end > table_start {
            return Err(Error::corrupt(
                &key,
                format!("table entry {} points outside the blob area", e.id),
            ));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::{content_id, open_blob, seal_blob};
    use proptest::prelude::*;

    fn kind_strategy() -> impl Strategy<Value = BlobKind> {
        prop::sample::select(BlobKind::ALL.to_vec())
    }

    fn entry_strategy() -> impl Strategy<Value = PackEntry> {
        (
            any::<[u8; 32]>(),
            kind_strategy(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(id, kind, offset, length)| PackEntry {
                id: ContentId::from_bytes(id),
                kind,
                offset,
                length,
            })
    }

    proptest! {
        #[test]
        fn table_round_trips(entries in prop::collection::vec(entry_strategy(), 0..50)) {
            prop_assert_eq!(decode_table(&encode_table(&entries)).unwrap(), entries);
        }

        #[test]
        fn table_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_table(&bytes);
        }

        #[test]
        fn pack_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_pack(&[1; 32], PackId([2; 16]), &bytes);
        }
    }

    #[test]
    fn pack_round_trip_and_every_flip_is_caught() {
        let key = [7u8; 32];
        let pack = PackId([3; 16]);
        let blobs: Vec<_> = [b"first".as_slice(), b"second blob", b""]
            .iter()
            .map(|d| {
                let id = content_id(&key, BlobKind::Attachment, d);
                (
                    id,
                    BlobKind::Attachment,
                    seal_blob(&key, BlobKind::Attachment, &id, d),
                )
            })
            .collect();
        let (bytes, entries) = build_pack(&key, pack, &blobs).unwrap();
        assert_eq!(parse_pack(&key, pack, &bytes).unwrap(), entries);
        for (e, d) in entries
            .iter()
            .zip([b"first".as_slice(), b"second blob", b""])
        {
            let slice = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(open_blob(&key, e.kind, &e.id, slice, "p").unwrap(), d);
        }
        assert!(matches!(
            parse_pack(&key, pack, &bytes[..bytes.len() - 3]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            parse_pack(&key, PackId([4; 16]), &bytes),
            Err(Error::AuthenticationFailed { .. })
        ));
        // A flip in the table, trailer or header is caught by parse_pack; a flip inside a
        // blob by that blob's tag.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x80;
            let table_ok = parse_pack(&key, pack, &bad);
            let blobs_ok = entries.iter().all(|e| {
                let s = &bad[e.offset as usize..(e.offset + e.length) as usize];
                open_blob(&key, e.kind, &e.id, s, "p").is_ok()
            });
            assert!(table_ok.is_err() || !blobs_ok, "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn pack_id_key_round_trip() {
        let p = PackId([0xab; 16]);
        assert_eq!(p.store_key(), format!("packs/ab/{}", "ab".repeat(16)));
        assert_eq!(PackId::from_store_key(&p.store_key()), Some(p));
        assert_eq!(PackId::from_store_key("packs/ab/zz"), None);
    }
}
