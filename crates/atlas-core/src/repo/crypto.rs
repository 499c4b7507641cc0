//! Object encryption: the plaintext frame, sealed objects, blobs in packs, content ids,
//! and decryption of TypeScript Atlas v1 objects.
//!
//! Layouts are specified in `docs/FORMAT.md`; this module is their only implementation.

use hmac::{Hmac, Mac};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use sha2::{Digest, Sha256};

use super::BlobKind;
use crate::error::{Error, Result};
use crate::model::ContentId;

pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
/// `method u8 | raw_len u64 LE | sha256[32]`: the frame of sealed objects, and of blobs
/// in repositories before format 4.
pub(crate) const FRAME_HEADER_LEN: usize = 1 + 8 + 32;
/// `method u8 | raw_len u64 LE`: a blob frame without the SHA-256 (format 4). The blob's
/// plaintext is checked by its content id instead (see [`FrameChecksum`]).
const SHORT_FRAME_HEADER_LEN: usize = 1 + 8;
/// Decompressed frames larger than this are refused (a hostile or broken length field
/// must not make us allocate without bound).
const MAX_FRAME_RAW_LEN: u64 = 1 << 30;
const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;
/// Added to the method byte when the frame has no SHA-256 field: 2 = raw, 3 = zstd.
const NO_CHECKSUM: u8 = 2;
/// zstd level 1: on mail it stores a few percent more than level 3 at clearly less CPU
/// (level 3's double-fast matcher dominated write profiles).
const ZSTD_LEVEL: i32 = 1;
/// Payloads at least this large are test-compressed on a sample first.
const SAMPLE_FROM: usize = 64 << 10;
const SAMPLE_LEN: usize = 16 << 10;

thread_local! {
    /// One compression and one decompression context per thread: creating a context per
    /// blob showed up in profiles (tables are allocated and zeroed each time).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd-compress with this thread's context; `None` on failure (then stored raw).
/// `content_checksum` asks zstd to end the frame with its content checksum (the low 32
/// bits of XXH64 of the payload, computed by the compressor in the pass that reads the
/// payload, and checked by every zstd decoder while it decodes): the decode check of
/// format-4 blob frames, which carry no SHA-256 (see [`FrameChecksum::None`]).
fn compress(payload: &[u8], content_checksum: bool) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        let c = c.as_mut()?;
        c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(content_checksum))
            .ok()?;
        c.compress(payload).ok()
    })
}

fn decompress(body: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut()
            .expect("invariant: set just above")
            .decompress(body, raw_len)
    })
}

/// Whether compressing is worth trying: large payloads whose middle does not shrink by
/// 3% (encrypted or already-compressed attachments, random data) are stored raw without
/// spending a full compression pass on them.
fn worth_compressing(payload: &[u8]) -> bool {
    if payload.len() < SAMPLE_FROM {
        return true;
    }
    let start = payload.len() / 2 - SAMPLE_LEN / 2;
    let sample = &payload[start..start + SAMPLE_LEN];
    compress(sample, false).is_some_and(|c| c.len() * 100 < sample.len() * 97)
}

const OBJECT_MAGIC: &[u8; 4] = b"ATLO";
const OBJECT_VERSION: u8 = 1;
/// `magic[4] | version u8 | type u8 | body_len u64 LE`.
pub(crate) const OBJECT_HEADER_LEN: usize = 4 + 1 + 1 + 8;
const BLOB_AAD_MAGIC: &[u8; 4] = b"ATLB";
const BLOB_VERSION: u8 = 1;
/// Bytes a blob adds to its frame: nonce and tag.
pub(crate) const BLOB_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The kinds of sealed (stand-alone, named) objects. The type byte is authenticated, so an
/// index can never be decrypted as a snapshot record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ObjectType {
    Config = 1,
    Index = 2,
    Snapshot = 3,
    Lease = 4,
    Mailbox = 5,
    PackTable = 6,
    PrunePending = 7,
    /// A replication status record (`replication/<target>/<snapshot>`).
    Replication = 8,
}

/// AES-256-GCM under `key`. ring's implementation (assembly with AES-NI and carry-less
/// multiplication, the two interleaved) runs at several times the speed of the pure-Rust
/// `aes-gcm` crate that sealed blobs before (7.5 % of backup's CPU in the 2026-12-05
/// profile, mostly its one-block-at-a-time GHASH); the output is the same AES-GCM, so
/// everything written before reads unchanged.
fn cipher(key: &[u8; 32]) -> Cipher {
    Cipher(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).expect("invariant: AES-256 takes a 32-byte key"),
    ))
}

/// An AES-256-GCM key with detached nonce and tag, in the shape the layouts use.
struct Cipher(LessSafeKey);

/// Opening: authentication failed (wrong key, tampered bytes, wrong associated data).
/// Sealing: the buffer is beyond AES-GCM's length limit (64 GiB).
#[derive(Debug)]
struct AeadError;

impl Cipher {
    fn encrypt_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> std::result::Result<[u8; TAG_LEN], AeadError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| AeadError)?;
        tag.as_ref().try_into().map_err(|_| AeadError)
    }

    fn decrypt_in_place_detached(
        &self,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> std::result::Result<(), AeadError> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AeadError)?;
        let tag = Tag::try_from(tag).map_err(|_| AeadError)?;
        self.0
            .open_in_place_separate_tag(nonce, Aad::from(aad), tag, buf, 0..)
            .map(|_| ())
            .map_err(|_| AeadError)
    }
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut n);
    n
}

/// The content id: `HMAC-SHA256(id_key, kind u8 || content)`.
pub(crate) fn content_id(id_key: &[u8; 32], kind: BlobKind, data: &[u8]) -> ContentId {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(id_key)
        .expect("invariant: HMAC takes any key length");
    mac.update(&[kind as u8]);
    mac.update(data);
    ContentId::from_bytes(mac.finalize().into_bytes().into())
}

/// A keyed name for a mailbox in store keys: first 16 bytes of
/// `HMAC-SHA256(name_key, "mailbox:" || address)`, hex.
pub(crate) fn mailbox_name(name_key: &[u8; 32], address: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(name_key)
        .expect("invariant: HMAC takes any key length");
    mac.update(b"mailbox:");
    mac.update(address.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// SHA-256 of a payload: the frame checksum of sealed objects and of blobs before
/// format 4, and what records of those repositories keep as a plaintext checksum (e.g.
/// `mimeSha256`).
pub(crate) fn sha256(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

/// The content id and the SHA-256 of `data`, in one pass over the bytes (both hashes are
/// fed each cache-sized piece in turn, so the content is read from memory once). Only
/// repositories before format 4 need the SHA-256; format 4 computes the content id alone.
pub(crate) fn content_id_and_sha256(
    id_key: &[u8; 32],
    kind: BlobKind,
    data: &[u8],
) -> (ContentId, [u8; 32]) {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(id_key)
        .expect("invariant: HMAC takes any key length");
    mac.update(&[kind as u8]);
    let mut sha = Sha256::new();
    for piece in data.chunks(64 << 10) {
        mac.update(piece);
        sha.update(piece);
    }
    (
        ContentId::from_bytes(mac.finalize().into_bytes().into()),
        sha.finalize().into(),
    )
}

/// What a frame carries to check its plaintext after decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameChecksum<'a> {
    /// The payload's SHA-256, in the frame (sealed objects; blobs before format 4).
    Sha256(&'a [u8; 32]),
    /// No SHA-256: a blob of format 4. The AEAD tag, whose associated data holds the
    /// content id, proves the frame is what a key holder sealed for that id. A compressed
    /// frame carries zstd's content checksum (written by builds since verify's decode
    /// check, FORMAT.md §4.3), which proves it decodes to the bytes that were compressed;
    /// a raw frame, or a zstd frame written before, is checked by recomputing its content
    /// id (a keyed SHA-256 of the plaintext), as is every frame in verify's deepest mode.
    None,
}

/// Build a frame: compressed with zstd when that is smaller, raw otherwise.
pub(crate) fn encode_frame(payload: &[u8]) -> Vec<u8> {
    encode_frame_with(payload, FrameChecksum::Sha256(&sha256(payload)))
}

/// [`encode_frame`] with the checksum the caller chose: a SHA-256 it already computed
/// (so the payload is not hashed a second time), or none (format-4 blobs).
pub(crate) fn encode_frame_with(payload: &[u8], checksum: FrameChecksum<'_>) -> Vec<u8> {
    let compressed = if worth_compressing(payload) {
        compress(payload, checksum == FrameChecksum::None).filter(|c| c.len() < payload.len())
    } else {
        None
    };
    let (method, body): (u8, &[u8]) = match &compressed {
        Some(c) => (COMPRESSION_ZSTD, c),
        None => (COMPRESSION_NONE, payload),
    };
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len() + BLOB_OVERHEAD);
    match checksum {
        FrameChecksum::Sha256(sha) => {
            out.push(method);
            out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            out.extend_from_slice(sha);
        }
        FrameChecksum::None => {
            out.push(method + NO_CHECKSUM);
            out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        }
    }
    out.extend_from_slice(body);
    out
}

/// Decode a frame and check its checksum when it has one. Only ever called on
/// authenticated plaintext; a frame without checksum is accepted only where the caller
/// checks the plaintext otherwise (blobs, see [`open_blob`]).
pub(crate) fn decode_frame(frame: &[u8], key_name: &str) -> Result<Vec<u8>> {
    decode_frame_checked(frame, key_name, false)
}

fn decode_frame_checked(frame: &[u8], key_name: &str, allow_unchecked: bool) -> Result<Vec<u8>> {
    let header = frame_header(frame, key_name, allow_unchecked)?;
    let body = &frame[header.len..];
    let payload = if header.zstd {
        decompress(body, header.raw_len)
            .map_err(|e| Error::corrupt(key_name, format!("zstd: {e}")))?
    } else {
        body.to_vec()
    };
    header.check(&payload, key_name)?;
    Ok(payload)
}

/// A frame's header, parsed and bounded.
struct FrameHeader<'a> {
    zstd: bool,
    sha: Option<&'a [u8]>,
    /// Header length: the body follows.
    len: usize,
    raw_len: usize,
}

impl FrameHeader<'_> {
    /// The decoded payload has the declared length and, when the frame has a checksum,
    /// that SHA-256.
    fn check(&self, payload: &[u8], key_name: &str) -> Result<()> {
        if payload.len() != self.raw_len {
            return Err(Error::corrupt(
                key_name,
                "frame length does not match its header",
            ));
        }
        if self
            .sha
            .is_some_and(|sha| Sha256::digest(payload).as_slice() != sha)
        {
            return Err(Error::corrupt(key_name, "plaintext checksum mismatch"));
        }
        Ok(())
    }
}

fn frame_header<'a>(
    frame: &'a [u8],
    key_name: &str,
    allow_unchecked: bool,
) -> Result<FrameHeader<'a>> {
    if frame.len() < SHORT_FRAME_HEADER_LEN {
        return Err(Error::corrupt(key_name, "frame shorter than its header"));
    }
    let (method, sha, header_len) = match frame[0] {
        m @ (COMPRESSION_NONE | COMPRESSION_ZSTD) => {
            if frame.len() < FRAME_HEADER_LEN {
                return Err(Error::corrupt(key_name, "frame shorter than its header"));
            }
            (m, Some(&frame[9..41]), FRAME_HEADER_LEN)
        }
        m if allow_unchecked
            && (m == COMPRESSION_NONE + NO_CHECKSUM || m == COMPRESSION_ZSTD + NO_CHECKSUM) =>
        {
            (m - NO_CHECKSUM, None, SHORT_FRAME_HEADER_LEN)
        }
        other => {
            return Err(Error::corrupt(
                key_name,
                format!("unknown compression {other}"),
            ));
        }
    };
    let raw_len = u64::from_le_bytes(frame[1..9].try_into().expect("invariant: 8-byte slice"));
    if raw_len > MAX_FRAME_RAW_LEN {
        return Err(Error::corrupt(
            key_name,
            format!("frame claims {raw_len} bytes"),
        ));
    }
    Ok(FrameHeader {
        zstd: method == COMPRESSION_ZSTD,
        sha,
        len: header_len,
        raw_len: raw_len as usize,
    })
}

fn object_aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    [header, context].concat()
}

/// Seal a named object: `header | nonce | AES-GCM(frame) | tag`, AAD = header || context
/// (the store key, plus the pack header for pack tables).
pub(crate) fn seal_object(
    enc_key: &[u8; 32],
    ty: ObjectType,
    context: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = encode_frame(payload);
    let body_len = (body.len() + TAG_LEN) as u64;
    let mut out = Vec::with_capacity(OBJECT_HEADER_LEN + NONCE_LEN + body.len() + TAG_LEN);
    out.extend_from_slice(OBJECT_MAGIC);
    out.push(OBJECT_VERSION);
    out.push(ty as u8);
    out.extend_from_slice(&body_len.to_le_bytes());
    let nonce = random_nonce();
    let aad = object_aad(&out, context);
    let tag = cipher(enc_key)
        .encrypt_in_place_detached(&nonce, &aad, &mut body)
        .expect("invariant: AES-GCM encrypts any buffer under 64 GiB");
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    out
}

/// Open a sealed object, checking magic, version, type, length and tag, then the frame.
pub(crate) fn open_object(
    enc_key: &[u8; 32],
    ty: ObjectType,
    context: &[u8],
    bytes: &[u8],
    key_name: &str,
) -> Result<Vec<u8>> {
    if bytes.len() < OBJECT_HEADER_LEN {
        if OBJECT_MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            return Err(Error::Truncated {
                key: key_name.to_owned(),
                expected: OBJECT_HEADER_LEN as u64,
                actual: bytes.len() as u64,
            });
        }
        return Err(Error::corrupt(key_name, "not an Atlas object (too short)"));
    }
    if &bytes[..4] != OBJECT_MAGIC {
        return Err(Error::corrupt(key_name, "bad magic: not an Atlas object"));
    }
    if bytes[4] != OBJECT_VERSION {
        return Err(Error::UnsupportedVersion {
            what: format!("object {key_name}"),
            found: u32::from(bytes[4]),
            supported: u32::from(OBJECT_VERSION),
        });
    }
    if bytes[5] != ty as u8 {
        return Err(Error::corrupt(
            key_name,
            format!("object type {} where {} was expected", bytes[5], ty as u8),
        ));
    }
    let body_len = u64::from_le_bytes(bytes[6..14].try_into().expect("invariant: 8-byte slice"));
    let expected = (OBJECT_HEADER_LEN + NONCE_LEN) as u64 + body_len;
    let actual = bytes.len() as u64;
    if actual < expected {
        return Err(Error::Truncated {
            key: key_name.to_owned(),
            expected,
            actual,
        });
    }
    if actual > expected || body_len < TAG_LEN as u64 {
        return Err(Error::corrupt(
            key_name,
            format!("{actual} bytes where the header says {expected}"),
        ));
    }
    let nonce = &bytes[OBJECT_HEADER_LEN..OBJECT_HEADER_LEN + NONCE_LEN];
    let ct = &bytes[OBJECT_HEADER_LEN + NONCE_LEN..bytes.len() - TAG_LEN];
    let tag = &bytes[bytes.len() - TAG_LEN..];
    let mut buf = ct.to_vec();
    let aad = object_aad(&bytes[..OBJECT_HEADER_LEN], context);
    cipher(enc_key)
        .decrypt_in_place_detached(nonce, &aad, &mut buf, tag)
        .map_err(|_| Error::AuthenticationFailed {
            key: key_name.to_owned(),
        })?;
    decode_frame(&buf, key_name)
}

fn blob_aad(kind: BlobKind, id: &ContentId) -> [u8; 4 + 1 + 1 + 32] {
    let mut aad = [0u8; 38];
    aad[..4].copy_from_slice(BLOB_AAD_MAGIC);
    aad[4] = BLOB_VERSION;
    aad[5] = kind as u8;
    aad[6..].copy_from_slice(id.as_bytes());
    aad
}

/// Encrypt one blob for a pack: `nonce | AES-GCM(frame) | tag`, AAD binds version, kind
/// and content id. The frame carries a SHA-256 (the layout before format 4).
#[cfg(test)]
pub(crate) fn seal_blob(
    enc_key: &[u8; 32],
    kind: BlobKind,
    id: &ContentId,
    data: &[u8],
) -> Vec<u8> {
    seal_blob_with(
        enc_key,
        kind,
        id,
        data,
        FrameChecksum::Sha256(&sha256(data)),
    )
}

/// [`seal_blob`] with the frame checksum the caller chose: the SHA-256 it computed in the
/// same pass as the content id (before format 4), or none (format 4).
pub(crate) fn seal_blob_with(
    enc_key: &[u8; 32],
    kind: BlobKind,
    id: &ContentId,
    data: &[u8],
    checksum: FrameChecksum<'_>,
) -> Vec<u8> {
    let frame = encode_frame_with(data, checksum);
    let nonce = random_nonce();
    // Nonce, frame and tag in one buffer, encrypted in place (a blob is copied once).
    let mut out = Vec::with_capacity(NONCE_LEN + frame.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&frame);
    drop(frame);
    let tag = cipher(enc_key)
        .encrypt_in_place_detached(&nonce, &blob_aad(kind, id), &mut out[NONCE_LEN..])
        .expect("invariant: AES-GCM encrypts any buffer under 64 GiB");
    out.extend_from_slice(&tag);
    out
}

/// Decrypt one blob and check its frame checksum when the frame has one. The caller
/// checks the content id (a format-4 frame has no other plaintext check).
pub(crate) fn open_blob(
    enc_key: &[u8; 32],
    kind: BlobKind,
    id: &ContentId,
    bytes: &[u8],
    key_name: &str,
) -> Result<Vec<u8>> {
    if bytes.len() < BLOB_OVERHEAD + SHORT_FRAME_HEADER_LEN {
        return Err(Error::corrupt(
            key_name,
            format!("blob {id} shorter than its overhead"),
        ));
    }
    let nonce = &bytes[..NONCE_LEN];
    let tag = &bytes[bytes.len() - TAG_LEN..];
    let mut buf = bytes[NONCE_LEN..bytes.len() - TAG_LEN].to_vec();
    cipher(enc_key)
        .decrypt_in_place_detached(nonce, &blob_aad(kind, id), &mut buf, tag)
        .map_err(|_| Error::AuthenticationFailed {
            key: key_name.to_owned(),
        })?;
    decode_frame_checked(&buf, key_name, true)
}

/// How verify (`check_blob`) checks a blob's plaintext, beyond the AEAD tag (which, with the
/// content id in its associated data, already proves the stored bytes are what a key
/// holder sealed for that id) and the frame's declared length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContentCheck {
    /// The frame's own checksum where it carries one — zstd's content checksum, checked
    /// while decoding (format-4 frames written since FORMAT.md §4.3's decode check), or
    /// the SHA-256 of frames before format 4 — and the content id recomputed from the
    /// plaintext where it carries none (raw frames, zstd frames written before).
    /// Proves the stored bytes decode to exactly the content the writer sealed.
    #[default]
    Decode,
    /// The frame's checksum and the content id recomputed from the whole plaintext for
    /// every blob (HMAC-SHA256, ~0.5 ns per byte): also proves that the writer sealed under
    /// each id the content the id names (`atlas verify --content-ids`).
    ContentId,
}

/// Buffers that [`check_blob`] keeps at most this large between calls (per thread): the
/// common blob (a message, a folder list) is checked without allocating, and a thread
/// that once checked a 4 MiB chunk does not keep 8 MiB for good.
const SCRATCH_KEEP: usize = 512 << 10;

thread_local! {
    /// Ciphertext and plaintext scratch of [`check_blob`].
    static CHECK_SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The key and depth [`check_blob`] checks a blob's plaintext with.
#[derive(Clone, Copy)]
pub(crate) struct BlobCheck<'a> {
    /// The content-id key, or `None` where the id does not cover this blob's plaintext
    /// (a chunk list: its id covers the whole content, checked elsewhere).
    pub(crate) id_key: Option<&'a [u8; 32]>,
    /// How deep.
    pub(crate) depth: ContentCheck,
}

/// Check one blob without keeping its plaintext (verify): the AEAD tag, the frame and its
/// checksum, and — as `check` asks — the content id. The same checks as [`open_blob`]
/// followed by the content id, but through two buffers reused by the thread: no
/// allocation per blob, and the plaintext is hashed while it is still in the cache the
/// decompressor wrote it to.
pub(crate) fn check_blob(
    enc_key: &[u8; 32],
    check: BlobCheck<'_>,
    kind: BlobKind,
    id: &ContentId,
    bytes: &[u8],
    key_name: &str,
) -> Result<()> {
    if bytes.len() < BLOB_OVERHEAD + SHORT_FRAME_HEADER_LEN {
        return Err(Error::corrupt(
            key_name,
            format!("blob {id} shorter than its overhead"),
        ));
    }
    CHECK_SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let (frame, plain) = &mut *scratch;
        let result = check_blob_with(enc_key, check, kind, id, bytes, key_name, frame, plain);
        for buf in [frame, plain] {
            buf.clear();
            buf.shrink_to(SCRATCH_KEEP);
        }
        result
    })
}

/// Whether `body` is exactly one zstd frame that ends with zstd's content checksum, so
/// decoding it checks every byte it decodes to. Anything else (a frame without the
/// checksum, several frames, a skippable frame) is not, and is checked by content id.
fn is_one_checksummed_zstd_frame(body: &[u8]) -> bool {
    /// zstd frame magic, little-endian (RFC 8878 §3.1.1).
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
    /// `Content_Checksum_flag` of the frame header descriptor (RFC 8878 §3.1.1.1.1).
    const CONTENT_CHECKSUM_FLAG: u8 = 1 << 2;
    body.len() > 4
        && body[..4] == ZSTD_MAGIC
        && body[4] & CONTENT_CHECKSUM_FLAG != 0
        && zstd::zstd_safe::find_frame_compressed_size(body) == Ok(body.len())
}

#[allow(clippy::too_many_arguments)]
fn check_blob_with(
    enc_key: &[u8; 32],
    check: BlobCheck<'_>,
    kind: BlobKind,
    id: &ContentId,
    bytes: &[u8],
    key_name: &str,
    frame: &mut Vec<u8>,
    plain: &mut Vec<u8>,
) -> Result<()> {
    let nonce = &bytes[..NONCE_LEN];
    let tag = &bytes[bytes.len() - TAG_LEN..];
    frame.clear();
    frame.extend_from_slice(&bytes[NONCE_LEN..bytes.len() - TAG_LEN]);
    cipher(enc_key)
        .decrypt_in_place_detached(nonce, &blob_aad(kind, id), frame, tag)
        .map_err(|_| Error::AuthenticationFailed {
            key: key_name.to_owned(),
        })?;
    let header = frame_header(frame, key_name, true)?;
    let body = &frame[header.len..];
    let checksummed = header.sha.is_some() || (header.zstd && is_one_checksummed_zstd_frame(body));
    let id_key = check
        .id_key
        .filter(|_| check.depth == ContentCheck::ContentId || !checksummed);
    let payload: &[u8] = if header.zstd {
        plain.clear();
        plain.reserve(header.raw_len);
        // zstd checks the frame's content checksum, when it has one, as it decodes.
        DECOMPRESSOR
            .with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new()?);
                }
                d.as_mut()
                    .expect("invariant: set just above")
                    .decompress_to_buffer(body, plain)
            })
            .map_err(|e| Error::corrupt(key_name, format!("zstd: {e}")))?;
        plain
    } else {
        body
    };
    header.check(payload, key_name)?;
    if id_key.is_some_and(|k| content_id(k, kind, payload) != *id) {
        return Err(Error::ChecksumMismatch {
            key: key_name.to_owned(),
            id: *id,
        });
    }
    Ok(())
}

/// Decrypt a TypeScript Atlas v1 object: `iv[12] | tag[16] | ct`, no associated data,
/// directly under the data key.
pub fn decrypt_v1_object(
    dek: &crate::repo::DataKey,
    bytes: &[u8],
    key_name: &str,
) -> Result<Vec<u8>> {
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(Error::Truncated {
            key: key_name.to_owned(),
            expected: (NONCE_LEN + TAG_LEN) as u64,
            actual: bytes.len() as u64,
        });
    }
    let mut buf = bytes[NONCE_LEN + TAG_LEN..].to_vec();
    cipher(dek.expose_secret())
        .decrypt_in_place_detached(
            &bytes[..NONCE_LEN],
            &[],
            &mut buf,
            &bytes[NONCE_LEN..NONCE_LEN + TAG_LEN],
        )
        .map_err(|_| Error::AuthenticationFailed {
            key: key_name.to_owned(),
        })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [42; 32];

    #[test]
    fn frame_compresses_text_and_stores_noise_raw() {
        let text = "Hello, world. ".repeat(1000);
        let f = encode_frame(text.as_bytes());
        assert_eq!(f[0], COMPRESSION_ZSTD);
        assert!(f.len() < text.len() / 10);
        assert_eq!(decode_frame(&f, "k").unwrap(), text.as_bytes());
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let f = encode_frame(&noise);
        assert_eq!(decode_frame(&f, "k").unwrap(), noise);
        assert_eq!(decode_frame(&encode_frame(b""), "k").unwrap(), b"");
    }

    #[test]
    fn sealed_object_binds_type_and_context() {
        let sealed = seal_object(&KEY, ObjectType::Snapshot, b"snapshots/a", b"payload");
        assert_eq!(
            open_object(&KEY, ObjectType::Snapshot, b"snapshots/a", &sealed, "k").unwrap(),
            b"payload"
        );
        assert!(matches!(
            open_object(&KEY, ObjectType::Snapshot, b"snapshots/b", &sealed, "k"),
            Err(Error::AuthenticationFailed { .. })
        ));
        assert!(matches!(
            open_object(&KEY, ObjectType::Index, b"snapshots/a", &sealed, "k"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            open_object(
                &KEY,
                ObjectType::Snapshot,
                b"snapshots/a",
                &sealed[..sealed.len() - 1],
                "k"
            ),
            Err(Error::Truncated { .. })
        ));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                open_object(&KEY, ObjectType::Snapshot, b"snapshots/a", &bad, "k").is_err(),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn blob_binds_kind_and_id() {
        let id = content_id(&KEY, BlobKind::Mime, b"data");
        let sealed = seal_blob(&KEY, BlobKind::Mime, &id, b"data");
        assert_eq!(
            open_blob(&KEY, BlobKind::Mime, &id, &sealed, "p").unwrap(),
            b"data"
        );
        assert!(open_blob(&KEY, BlobKind::Attachment, &id, &sealed, "p").is_err());
        let other = content_id(&KEY, BlobKind::Mime, b"other");
        assert!(open_blob(&KEY, BlobKind::Mime, &other, &sealed, "p").is_err());
    }

    #[test]
    fn format_4_blob_frames_have_no_checksum_and_still_round_trip() {
        let text = "Hello, world. ".repeat(1000);
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for payload in [text.as_bytes(), &noise[..], b""] {
            let with = encode_frame(payload);
            let without = encode_frame_with(payload, FrameChecksum::None);
            // Compressed, it carries zstd's 4-byte content checksum instead.
            let zstd_checksum = if without[0] == COMPRESSION_ZSTD + NO_CHECKSUM {
                4
            } else {
                0
            };
            assert_eq!(
                without.len() + 32,
                with.len() + zstd_checksum,
                "the SHA-256 field is gone"
            );
            assert_eq!(without[0], with[0] + NO_CHECKSUM);
            assert_eq!(decode_frame_checked(&without, "k", true).unwrap(), payload);
            // A sealed object's frame must carry its checksum: nothing else checks it.
            assert!(matches!(
                decode_frame(&without, "k"),
                Err(Error::Corrupt { .. })
            ));
            let id = content_id(&KEY, BlobKind::Mime, payload);
            let sealed = seal_blob_with(&KEY, BlobKind::Mime, &id, payload, FrameChecksum::None);
            assert_eq!(
                open_blob(&KEY, BlobKind::Mime, &id, &sealed, "p").unwrap(),
                payload
            );
            for check in [DECODE, DEEP] {
                check_blob(&KEY, check, BlobKind::Mime, &id, &sealed, "p").unwrap();
            }
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= 0x01;
                assert!(
                    open_blob(&KEY, BlobKind::Mime, &id, &bad, "p").is_err(),
                    "flip at {i}"
                );
                for check in [DECODE, DEEP] {
                    assert!(
                        check_blob(&KEY, check, BlobKind::Mime, &id, &bad, "p").is_err(),
                        "flip at {i}"
                    );
                }
            }
        }
    }

    /// Verify's check: what `open_blob` checks plus, as deep as asked, the content id,
    /// for both frame layouts. A plaintext that is not what the id names (sealed wrong by
    /// a key holder) fails the deep check always, and the decode check where the frame
    /// carries no checksum of its own (raw frames); with no id key to give (a chunk list:
    /// its id covers the whole content) only the tag and the frame are checked.
    #[test]
    fn check_blob_checks_tag_frame_and_content_id() {
        let text = "Hello, world. ".repeat(50_000);
        for payload in [text.as_bytes(), b"short", b""] {
            let id = content_id(&KEY, BlobKind::Mime, payload);
            for checksum in [FrameChecksum::Sha256(&sha256(payload)), FrameChecksum::None] {
                let sealed = seal_blob_with(&KEY, BlobKind::Mime, &id, payload, checksum);
                for check in [DECODE, DEEP] {
                    check_blob(&KEY, check, BlobKind::Mime, &id, &sealed, "p").unwrap();
                    assert!(matches!(
                        check_blob(&KEY, check, BlobKind::Attachment, &id, &sealed, "p"),
                        Err(Error::AuthenticationFailed { .. })
                    ));
                }
            }
            let other = content_id(&KEY, BlobKind::Mime, b"something else");
            let wrong = seal_blob_with(&KEY, BlobKind::Mime, &other, payload, FrameChecksum::None);
            assert!(matches!(
                check_blob(&KEY, DEEP, BlobKind::Mime, &other, &wrong, "p"),
                Err(Error::ChecksumMismatch { .. })
            ));
            let compressed = encode_frame_with(payload, FrameChecksum::None)[0]
                == COMPRESSION_ZSTD + NO_CHECKSUM;
            assert_eq!(
                check_blob(&KEY, DECODE, BlobKind::Mime, &other, &wrong, "p").is_ok(),
                compressed,
                "the decode check takes zstd's checksum for the content id only where the \
                 frame has one"
            );
            check_blob(&KEY, NO_ID, BlobKind::Mime, &other, &wrong, "p").unwrap();
        }
    }

    const DECODE: BlobCheck<'static> = BlobCheck {
        id_key: Some(&KEY),
        depth: ContentCheck::Decode,
    };
    const DEEP: BlobCheck<'static> = BlobCheck {
        id_key: Some(&KEY),
        depth: ContentCheck::ContentId,
    };
    const NO_ID: BlobCheck<'static> = BlobCheck {
        id_key: None,
        depth: ContentCheck::Decode,
    };

    /// Seal any frame as the blob of `id` with the right key: what a key holder's writer
    /// with a bug could store, which the AEAD tag cannot tell from a good blob.
    fn seal_frame(id: &ContentId, frame: &[u8]) -> Vec<u8> {
        let nonce = random_nonce();
        let mut out = nonce.to_vec();
        out.extend_from_slice(frame);
        let tag = cipher(&KEY)
            .encrypt_in_place_detached(&nonce, &blob_aad(BlobKind::Mime, id), &mut out[NONCE_LEN..])
            .unwrap();
        out.extend_from_slice(&tag);
        out
    }

    /// A format-4 frame of `payload` compressed without zstd's content checksum, as
    /// builds before the decode check wrote them.
    fn frame_without_zstd_checksum(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![COMPRESSION_ZSTD + NO_CHECKSUM];
        f.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        f.extend_from_slice(&compress(payload, false).unwrap());
        f
    }

    #[test]
    fn format_4_compressed_frames_carry_zstds_content_checksum() {
        let text = "Hello, world. ".repeat(1000);
        let blob = encode_frame_with(text.as_bytes(), FrameChecksum::None);
        assert_eq!(blob[0], COMPRESSION_ZSTD + NO_CHECKSUM);
        assert!(is_one_checksummed_zstd_frame(
            &blob[SHORT_FRAME_HEADER_LEN..]
        ));
        // Frames with a SHA-256 (sealed objects, blobs before format 4) need no second one.
        let object = encode_frame(text.as_bytes());
        assert_eq!(object[0], COMPRESSION_ZSTD);
        assert!(!is_one_checksummed_zstd_frame(&object[FRAME_HEADER_LEN..]));
        let old = frame_without_zstd_checksum(text.as_bytes());
        assert!(!is_one_checksummed_zstd_frame(
            &old[SHORT_FRAME_HEADER_LEN..]
        ));
        // Two frames, the second without checksum, are not one checksummed frame.
        let mut two = blob[SHORT_FRAME_HEADER_LEN..].to_vec();
        two.extend_from_slice(&old[SHORT_FRAME_HEADER_LEN..]);
        assert!(!is_one_checksummed_zstd_frame(&two));
    }

    /// The check that remains when the decode check replaces the content id: a frame
    /// re-sealed with the right key and id over bytes that do not decode to what was
    /// compressed fails it. Every byte of the frame is altered in turn (header, zstd
    /// header, Huffman tables, literals, sequences, checksum), then sealed properly: each
    /// is caught, or decodes to the very same content.
    #[test]
    fn a_resealed_frame_that_does_not_decode_to_its_content_fails_the_decode_check() {
        let text = "Subject: quarterly figures\r\n\r\n".to_owned()
            + &"Revenue rose in every region; details attached. ".repeat(40);
        let payload = text.as_bytes();
        let id = content_id(&KEY, BlobKind::Mime, payload);
        let frame = encode_frame_with(payload, FrameChecksum::None);
        assert_eq!(frame[0], COMPRESSION_ZSTD + NO_CHECKSUM);
        check_blob(
            &KEY,
            DECODE,
            BlobKind::Mime,
            &id,
            &seal_frame(&id, &frame),
            "p",
        )
        .unwrap();
        let mut caught = 0;
        for i in 0..frame.len() {
            for bit in [0x01, 0x80] {
                let mut bad = frame.clone();
                bad[i] ^= bit;
                let sealed = seal_frame(&id, &bad);
                match check_blob(&KEY, DECODE, BlobKind::Mime, &id, &sealed, "p") {
                    Err(Error::Corrupt { .. } | Error::ChecksumMismatch { .. }) => caught += 1,
                    Err(e) => panic!("byte {i}: unexpected {e}"),
                    Ok(()) => assert_eq!(
                        decode_frame_checked(&bad, "k", true).unwrap(),
                        payload,
                        "byte {i} bit {bit:#x}: passed the decode check with other content"
                    ),
                }
            }
        }
        assert!(caught > frame.len(), "{caught} of {}", 2 * frame.len());
    }

    /// Where the decode check cannot stand in for the content id, the id is recomputed:
    /// a frame without zstd's checksum (written before) or a raw frame, sealed with the
    /// right key over content its id does not name, fails the default check; a frame
    /// with the checksum over such content fails the deep one.
    #[test]
    fn content_its_id_does_not_name_fails_where_no_frame_checksum_stands_in() {
        let right = "the content the id names ".repeat(100);
        let wrong = "other content, sealed wrong ".repeat(100);
        let id = content_id(&KEY, BlobKind::Mime, right.as_bytes());
        let old = seal_frame(&id, &frame_without_zstd_checksum(wrong.as_bytes()));
        let raw = seal_blob_with(&KEY, BlobKind::Mime, &id, b"tiny", FrameChecksum::None);
        for sealed in [&old, &raw] {
            for check in [DECODE, DEEP] {
                assert!(matches!(
                    check_blob(&KEY, check, BlobKind::Mime, &id, sealed, "p"),
                    Err(Error::ChecksumMismatch { .. })
                ));
            }
        }
        let new = seal_blob_with(
            &KEY,
            BlobKind::Mime,
            &id,
            wrong.as_bytes(),
            FrameChecksum::None,
        );
        assert!(matches!(
            check_blob(&KEY, DEEP, BlobKind::Mime, &id, &new, "p"),
            Err(Error::ChecksumMismatch { .. })
        ));
        // Frames written before the decode check still pass it when their content is right.
        let good_old = seal_frame(&id, &frame_without_zstd_checksum(right.as_bytes()));
        check_blob(&KEY, DECODE, BlobKind::Mime, &id, &good_old, "p").unwrap();
    }

    #[test]
    fn old_frames_still_check_their_sha256() {
        let mut f = encode_frame(b"plaintext");
        assert_eq!(f[0], COMPRESSION_NONE);
        let last = f.len() - 1;
        f[last] ^= 0x01;
        assert!(matches!(
            decode_frame_checked(&f, "k", true),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn content_id_is_keyed_and_kind_separated() {
        let a = content_id(&KEY, BlobKind::Mime, b"x");
        assert_ne!(a, content_id(&[1; 32], BlobKind::Mime, b"x"));
        assert_ne!(a, content_id(&KEY, BlobKind::Attachment, b"x"));
        assert_ne!(a.as_bytes().as_slice(), Sha256::digest(b"x").as_slice());
    }
}
