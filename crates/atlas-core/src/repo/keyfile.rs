//! The wrapped data-key blob (`_meta/dek.enc`).
//!
//! Format (identical to TypeScript Atlas 1.3 for KDF id 1, so its tenants keep their
//! passphrase; byte layout in `docs/FORMAT.md`):
//!
//! ```text
//! version u8 = 1 | kdf id u8 | params_len u16 BE | params | iv[12] | tag[16] | ct[32]
//! ```
//!
//! The header `[0, 4 + params_len)` is the AES-GCM associated data, so no parameter can be
//! downgraded unnoticed. KDF id 1 is scrypt (`N u32 BE | r u8 | p u8 | salt[32]`), id 2
//! (new in Atlas 2) is Argon2id (`m_kib u32 BE | t u32 BE | p u8 | salt[32]`). The KDF salt
//! is `u16 BE len(tenant) | tenant UTF-8 | salt[32]`.
//!
//! Pre-1.3 blobs (60 bytes, no header, scrypt N=2^14 with salt = tenant id) are accepted
//! as a fallback when the header does not parse.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce, Tag};
use zeroize::Zeroizing;

use super::secret::{DataKey, Passphrase};
use crate::error::{Error, Result};

/// Header version byte written and read.
const BLOB_VERSION: u8 = 1;
const KDF_SCRYPT: u8 = 1;
const KDF_ARGON2ID: u8 = 2;
const SALT_LEN: usize = 32;
const SCRYPT_PARAMS_LEN: usize = 4 + 1 + 1 + SALT_LEN;
const ARGON2_PARAMS_LEN: usize = 4 + 4 + 1 + SALT_LEN;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Size of a pre-1.3 blob: `iv | tag | ct(32)`.
const LEGACY_LEN: usize = IV_LEN + TAG_LEN + 32;
/// scrypt log2(N) of pre-1.3 blobs.
const LEGACY_LOG_N: u8 = 14;

/// Floor for new keys: scrypt N = 2^14 (the v1 reader's minimum).
pub const SCRYPT_MIN_LOG_N: u8 = 14;
/// Ceiling accepted anywhere (v1 reader's maximum, N = 2^20).
const SCRYPT_MAX_LOG_N: u8 = 20;
/// Reading a hostile header must not make us allocate unbounded memory: scrypt uses
/// `128 * N * r` bytes, capped here at 1 GiB.
const SCRYPT_MAX_MEMORY: u64 = 1 << 30;
/// Floor for new Argon2id keys (OWASP's minimum configuration: 19 MiB, t = 2).
pub const ARGON2_MIN_M_KIB: u32 = 19 * 1024;
const ARGON2_MIN_T: u32 = 2;
/// Ceilings accepted when reading (2 GiB, 64 passes, 16 lanes).
const ARGON2_MAX_M_KIB: u32 = 2 * 1024 * 1024;
const ARGON2_MAX_T: u32 = 64;
const ARGON2_MAX_P: u8 = 16;

/// Which KDF (and cost) wraps a new or re-wrapped data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfChoice {
    /// scrypt, KDF id 1 (readable by TypeScript Atlas 1.3 when `r`/`p` are in range).
    Scrypt {
        /// log2(N); 16 by default, at least 14.
        log_n: u8,
        /// Block size (8).
        r: u8,
        /// Parallelism (1).
        p: u8,
    },
    /// Argon2id, KDF id 2 (Atlas 2 only).
    Argon2id {
        /// Memory in KiB.
        m_kib: u32,
        /// Passes.
        t: u32,
        /// Lanes.
        p: u8,
    },
}

impl Default for KdfChoice {
    /// scrypt N = 2^16, r = 8, p = 1: what TypeScript Atlas 1.3 writes.
    fn default() -> Self {
        Self::Scrypt {
            log_n: 16,
            r: 8,
            p: 1,
        }
    }
}

impl KdfChoice {
    /// The cheapest scrypt setting allowed for new keys (N = 2^14); meant for tests.
    pub const SCRYPT_MINIMUM: Self = Self::Scrypt {
        log_n: SCRYPT_MIN_LOG_N,
        r: 8,
        p: 1,
    };

    /// Argon2id with 64 MiB, 3 passes, 1 lane.
    pub const ARGON2ID_DEFAULT: Self = Self::Argon2id {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };

    /// The cheapest Argon2id setting allowed for new keys; meant for tests.
    pub const ARGON2ID_MINIMUM: Self = Self::Argon2id {
        m_kib: ARGON2_MIN_M_KIB,
        t: ARGON2_MIN_T,
        p: 1,
    };

    /// Refuse settings below the floor for new keys.
    fn check_for_new_key(self) -> Result<()> {
        match self {
            Self::Scrypt { log_n, r, p } => {
                if !(SCRYPT_MIN_LOG_N..=SCRYPT_MAX_LOG_N).contains(&log_n) || r == 0 || p == 0 {
                    return Err(Error::invalid(format!(
                        "scrypt log2(N) must be {SCRYPT_MIN_LOG_N}..={SCRYPT_MAX_LOG_N} and r, p >= 1"
                    )));
                }
                check_scrypt_memory(log_n, r).map_err(Error::invalid)
            }
            Self::Argon2id { m_kib, t, p } => {
                if !(ARGON2_MIN_M_KIB..=ARGON2_MAX_M_KIB).contains(&m_kib)
                    || !(ARGON2_MIN_T..=ARGON2_MAX_T).contains(&t)
                    || !(1..=ARGON2_MAX_P).contains(&p)
                {
                    return Err(Error::invalid(format!(
                        "Argon2id needs m >= {ARGON2_MIN_M_KIB} KiB, t >= {ARGON2_MIN_T}, 1 <= p <= {ARGON2_MAX_P}"
                    )));
                }
                Ok(())
            }
        }
    }
}

fn check_scrypt_memory(log_n: u8, r: u8) -> std::result::Result<(), String> {
    let mem = 128u64 * (1u64 << log_n) * u64::from(r);
    if mem > SCRYPT_MAX_MEMORY {
        return Err(format!(
            "scrypt parameters need {mem} bytes, over the 1 GiB limit"
        ));
    }
    Ok(())
}

/// A parsed header.
struct Header<'a> {
    kdf: KdfChoice,
    salt: &'a [u8],
    /// `[0, 4 + params_len)`: the associated data.
    aad: &'a [u8],
    iv: &'a [u8],
    tag: &'a [u8],
    ct: &'a [u8],
}

/// Why a header did not parse; `Version` is reported as `UnsupportedVersion`.
enum HeaderError {
    Version(u8),
    Bad(String),
}

fn parse_header(blob: &[u8]) -> std::result::Result<Header<'_>, HeaderError> {
    if blob.len() < 4 {
        return Err(HeaderError::Bad(format!(
            "{} bytes, too short for a header",
            blob.len()
        )));
    }
    if blob[0] != BLOB_VERSION {
        return Err(HeaderError::Version(blob[0]));
    }
    let kdf_id = blob[1];
    let params_len = usize::from(u16::from_be_bytes([blob[2], blob[3]]));
    let params = blob
        .get(4..4 + params_len)
        .ok_or_else(|| HeaderError::Bad("KDF parameters truncated".into()))?;
    let (kdf, salt) = match kdf_id {
        KDF_SCRYPT => {
            if params_len != SCRYPT_PARAMS_LEN {
                return Err(HeaderError::Bad(format!(
                    "scrypt params length {params_len}, expected 38"
                )));
            }
            let n = u32::from_be_bytes([params[0], params[1], params[2], params[3]]);
            let (r, p) = (params[4], params[5]);
            if !n.is_power_of_two() {
                return Err(HeaderError::Bad(format!(
                    "scrypt N = {n} is not a power of two"
                )));
            }
            let log_n = n.trailing_zeros() as u8;
            if !(SCRYPT_MIN_LOG_N..=SCRYPT_MAX_LOG_N).contains(&log_n) || r == 0 || p == 0 {
                return Err(HeaderError::Bad(format!(
                    "scrypt parameters out of range (N={n}, r={r}, p={p})"
                )));
            }
            check_scrypt_memory(log_n, r).map_err(HeaderError::Bad)?;
            (KdfChoice::Scrypt { log_n, r, p }, &params[6..])
        }
        KDF_ARGON2ID => {
            if params_len != ARGON2_PARAMS_LEN {
                return Err(HeaderError::Bad(format!(
                    "Argon2id params length {params_len}, expected 41"
                )));
            }
            let m_kib = u32::from_be_bytes([params[0], params[1], params[2], params[3]]);
            let t = u32::from_be_bytes([params[4], params[5], params[6], params[7]]);
            let p = params[8];
            // Read limits are looser than the floor for new keys only in the minimum
            // direction; the ceilings keep a hostile header from exhausting memory.
            if !(8..=ARGON2_MAX_M_KIB).contains(&m_kib)
                || !(1..=ARGON2_MAX_T).contains(&t)
                || !(1..=ARGON2_MAX_P).contains(&p)
            {
                return Err(HeaderError::Bad(format!(
                    "Argon2id parameters out of range (m={m_kib} KiB, t={t}, p={p})"
                )));
            }
            (KdfChoice::Argon2id { m_kib, t, p }, &params[9..])
        }
        other => return Err(HeaderError::Bad(format!("unknown KDF id {other}"))),
    };
    let rest = &blob[4 + params_len..];
    if rest.len() < IV_LEN + TAG_LEN {
        return Err(HeaderError::Bad("wrapped key truncated".into()));
    }
    Ok(Header {
        kdf,
        salt,
        aad: &blob[..4 + params_len],
        iv: &rest[..IV_LEN],
        tag: &rest[IV_LEN..IV_LEN + TAG_LEN],
        ct: &rest[IV_LEN + TAG_LEN..],
    })
}

/// `u16 BE len(tenant) | tenant | random salt`: tenant-salted so that one passphrase used
/// by two tenants never yields the same KEK.
fn effective_salt(tenant: &str, salt: &[u8]) -> Result<Vec<u8>> {
    let t = tenant.as_bytes();
    let len =
        u16::try_from(t.len()).map_err(|_| Error::invalid("tenant id longer than 65535 bytes"))?;
    let mut out = Vec::with_capacity(2 + t.len() + salt.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(t);
    out.extend_from_slice(salt);
    Ok(out)
}

/// Run the KDF. CPU- and memory-heavy: callers run it on the blocking pool.
fn derive_kek(kdf: KdfChoice, passphrase: &Passphrase, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let mut kek = Zeroizing::new([0u8; 32]);
    match kdf {
        KdfChoice::Scrypt { log_n, r, p } => {
            let params = scrypt::Params::new(log_n, u32::from(r), u32::from(p), 32)
                .map_err(|e| Error::invalid(format!("scrypt parameters: {e}")))?;
            scrypt::scrypt(passphrase.expose().as_bytes(), salt, &params, kek.as_mut())
                .map_err(|e| Error::invalid(format!("scrypt: {e}")))?;
        }
        KdfChoice::Argon2id { m_kib, t, p } => {
            let params = argon2::Params::new(m_kib, t, u32::from(p), Some(32))
                .map_err(|e| Error::invalid(format!("Argon2id parameters: {e}")))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(passphrase.expose().as_bytes(), salt, kek.as_mut())
                .map_err(|e| Error::invalid(format!("Argon2id: {e}")))?;
        }
    }
    Ok(kek)
}

/// Wrap `dek` under `passphrase` for `tenant` with a fresh salt and IV.
pub(crate) fn wrap(
    dek: &DataKey,
    passphrase: &Passphrase,
    tenant: &str,
    kdf: KdfChoice,
) -> Result<Vec<u8>> {
    kdf.check_for_new_key()?;
    let mut salt = [0u8; SALT_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    let mut out = Vec::with_capacity(4 + ARGON2_PARAMS_LEN + IV_LEN + TAG_LEN + 32);
    out.push(BLOB_VERSION);
    match kdf {
        KdfChoice::Scrypt { log_n, r, p } => {
            out.push(KDF_SCRYPT);
            out.extend_from_slice(&(SCRYPT_PARAMS_LEN as u16).to_be_bytes());
            out.extend_from_slice(&(1u32 << log_n).to_be_bytes());
            out.push(r);
            out.push(p);
        }
        KdfChoice::Argon2id { m_kib, t, p } => {
            out.push(KDF_ARGON2ID);
            out.extend_from_slice(&(ARGON2_PARAMS_LEN as u16).to_be_bytes());
            out.extend_from_slice(&m_kib.to_be_bytes());
            out.extend_from_slice(&t.to_be_bytes());
            out.push(p);
        }
    }
    out.extend_from_slice(&salt);
    let kek = derive_kek(kdf, passphrase, &effective_salt(tenant, &salt)?)?;
    let mut iv = [0u8; IV_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut iv);
    let mut buf = Zeroizing::new(dek.expose_secret().to_vec());
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(kek.as_ref()));
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&iv), &out, buf.as_mut())
        .map_err(|_| Error::invalid("AES-GCM refused to encrypt the data key"))?;
    out.extend_from_slice(&iv);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Decrypt `iv | tag | ct` under `kek` with `aad`; `None` on authentication failure.
fn open_wrapped(
    kek: &[u8; 32],
    aad: &[u8],
    iv: &[u8],
    tag: &[u8],
    ct: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(kek));
    let mut buf = Zeroizing::new(ct.to_vec());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(iv),
            aad,
            buf.as_mut(),
            Tag::from_slice(tag),
        )
        .ok()?;
    Some(buf)
}

fn to_data_key(plain: &[u8], key_name: &str) -> Result<DataKey> {
    let bytes: [u8; 32] = plain.try_into().map_err(|_| {
        Error::corrupt(
            key_name,
            format!("unwrapped data key is {} bytes, expected 32", plain.len()),
        )
    })?;
    Ok(DataKey::from_bytes(bytes))
}

/// Which format a blob was in; reported so `key passwd` can tell users they upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBlobFormat {
    /// Versioned header (TypeScript 1.3 and Atlas 2).
    V1 {
        /// The KDF and its cost.
        kdf: KdfChoice,
    },
    /// Pre-1.3 headerless 60-byte blob.
    Legacy,
}

/// Unwrap a key blob. `key_name` only labels errors.
pub(crate) fn unwrap(
    blob: &[u8],
    passphrase: &Passphrase,
    tenant: &str,
    key_name: &str,
) -> Result<(DataKey, KeyBlobFormat)> {
    let wrong = || Error::WrongPassphrase {
        tenant: tenant.to_owned(),
        key: key_name.to_owned(),
    };
    match parse_header(blob) {
        Ok(h) => {
            let kek = derive_kek(h.kdf, passphrase, &effective_salt(tenant, h.salt)?)?;
            let plain = open_wrapped(&kek, h.aad, h.iv, h.tag, h.ct).ok_or_else(wrong)?;
            Ok((
                to_data_key(&plain, key_name)?,
                KeyBlobFormat::V1 { kdf: h.kdf },
            ))
        }
        Err(_) if blob.len() == LEGACY_LEN => {
            let params = scrypt::Params::new(LEGACY_LOG_N, 8, 1, 32)
                .expect("invariant: constant scrypt params are valid");
            let mut kek = Zeroizing::new([0u8; 32]);
            scrypt::scrypt(
                passphrase.expose().as_bytes(),
                tenant.as_bytes(),
                &params,
                kek.as_mut(),
            )
            .map_err(|e| Error::invalid(format!("scrypt: {e}")))?;
            let plain = open_wrapped(
                &kek,
                &[],
                &blob[..IV_LEN],
                &blob[IV_LEN..IV_LEN + TAG_LEN],
                &blob[IV_LEN + TAG_LEN..],
            )
            .ok_or_else(wrong)?;
            Ok((to_data_key(&plain, key_name)?, KeyBlobFormat::Legacy))
        }
        Err(HeaderError::Version(v)) => Err(Error::UnsupportedVersion {
            what: format!("wrapped key {key_name}"),
            found: u32::from(v),
            supported: u32::from(BLOB_VERSION),
        }),
        Err(HeaderError::Bad(reason)) => Err(Error::corrupt(key_name, reason)),
    }
}

/// Build a pre-1.3 blob (tests only: Atlas never writes this format).
#[cfg(test)]
pub(crate) fn wrap_legacy_for_tests(
    dek: &DataKey,
    passphrase: &Passphrase,
    tenant: &str,
) -> Vec<u8> {
    let params = scrypt::Params::new(LEGACY_LOG_N, 8, 1, 32).unwrap();
    let mut kek = [0u8; 32];
    scrypt::scrypt(
        passphrase.expose().as_bytes(),
        tenant.as_bytes(),
        &params,
        &mut kek,
    )
    .unwrap();
    let iv = [9u8; IV_LEN];
    let mut buf = dek.expose_secret().to_vec();
    let tag = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&kek))
        .encrypt_in_place_detached(Nonce::from_slice(&iv), &[], &mut buf)
        .unwrap();
    [iv.as_slice(), tag.as_slice(), &buf].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "contoso.onmicrosoft.com";

    #[test]
    fn scrypt_round_trip_and_v1_layout() {
        let dek = DataKey::from_bytes([3; 32]);
        let pw = Passphrase::new("pw");
        let blob = wrap(&dek, &pw, TENANT, KdfChoice::SCRYPT_MINIMUM).unwrap();
        assert_eq!(blob.len(), 102);
        assert_eq!(&blob[..10], &[1, 1, 0, 0x26, 0, 0, 0x40, 0, 8, 1]);
        let (got, fmt) = unwrap(&blob, &pw, TENANT, "k").unwrap();
        assert_eq!(got.expose_secret(), dek.expose_secret());
        assert_eq!(
            fmt,
            KeyBlobFormat::V1 {
                kdf: KdfChoice::SCRYPT_MINIMUM
            }
        );
    }

    #[test]
    fn argon2id_round_trip() {
        let dek = DataKey::from_bytes([4; 32]);
        let pw = Passphrase::new("pw");
        let blob = wrap(&dek, &pw, TENANT, KdfChoice::ARGON2ID_MINIMUM).unwrap();
        assert_eq!(blob[1], KDF_ARGON2ID);
        let (got, _) = unwrap(&blob, &pw, TENANT, "k").unwrap();
        assert_eq!(got.expose_secret(), dek.expose_secret());
        assert!(matches!(
            unwrap(&blob, &Passphrase::new("nope"), TENANT, "k"),
            Err(Error::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn tenant_is_part_of_the_salt() {
        let dek = DataKey::from_bytes([5; 32]);
        let pw = Passphrase::new("pw");
        let blob = wrap(&dek, &pw, TENANT, KdfChoice::SCRYPT_MINIMUM).unwrap();
        assert!(matches!(
            unwrap(&blob, &pw, "other-tenant", "k"),
            Err(Error::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn new_keys_below_the_floor_are_refused() {
        let dek = DataKey::from_bytes([5; 32]);
        let pw = Passphrase::new("pw");
        let weak = KdfChoice::Scrypt {
            log_n: 10,
            r: 8,
            p: 1,
        };
        assert!(matches!(
            wrap(&dek, &pw, TENANT, weak),
            Err(Error::InvalidInput { .. })
        ));
        let weak = KdfChoice::Argon2id {
            m_kib: 1024,
            t: 1,
            p: 1,
        };
        assert!(matches!(
            wrap(&dek, &pw, TENANT, weak),
            Err(Error::InvalidInput { .. })
        ));
    }

    #[test]
    fn legacy_sixty_byte_blob_opens() {
        let dek = DataKey::from_bytes([6; 32]);
        let pw = Passphrase::new("old");
        let blob = wrap_legacy_for_tests(&dek, &pw, TENANT);
        assert_eq!(blob.len(), 60);
        let (got, fmt) = unwrap(&blob, &pw, TENANT, "k").unwrap();
        assert_eq!(got.expose_secret(), dek.expose_secret());
        assert_eq!(fmt, KeyBlobFormat::Legacy);
        assert!(matches!(
            unwrap(&blob, &Passphrase::new("x"), TENANT, "k"),
            Err(Error::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn hostile_headers_are_rejected_before_running_the_kdf() {
        let pw = Passphrase::new("pw");
        // N = 2^20, r = 255: 32 GiB of scrypt memory.
        let mut blob = vec![1, 1, 0, 0x26, 0, 0x10, 0, 0, 255, 1];
        blob.extend_from_slice(&[0; 32 + 28 + 32]);
        assert!(matches!(
            unwrap(&blob, &pw, TENANT, "k"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            unwrap(&[2, 1, 0, 0], &pw, TENANT, "k"),
            Err(Error::UnsupportedVersion { found: 2, .. })
        ));
        assert!(matches!(
            unwrap(&[1, 9, 0, 0], &pw, TENANT, "k"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            unwrap(&[1], &pw, TENANT, "k"),
            Err(Error::Corrupt { .. })
        ));
    }
}
