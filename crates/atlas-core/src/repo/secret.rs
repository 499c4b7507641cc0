//! Secret types: the passphrase, the tenant data key and the keys derived from it.
//!
//! All of them zeroize their memory on drop, print as `<redacted>` in `Debug`, and have no
//! `Display`, so a secret cannot end up in a log line or an error message by accident.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The tenant passphrase that wraps the data key: Atlas's one secret string type, named
/// for what it holds here. Fed to the KDF as its UTF-8 bytes (exactly what Atlas 1.x used).
pub type Passphrase = crate::SecretString;

/// The tenant's 256-bit data key (DEK). Everything in the repository is encrypted under it
/// or under keys derived from it.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub(crate) fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, k.as_mut());
        Self(k)
    }

    /// Wrap existing key bytes (used when a wrapped key blob is opened).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key. Named like `secrecy`'s accessor so every use is easy to audit; needed
    /// to check the v1 test vectors and to decrypt v1 objects.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Labels for the keys derived from the data key (domain separation: a key used for one
/// purpose is never used for another). Fixed forever; documented in `docs/FORMAT.md`.
const LABEL_ENCRYPT: &[u8] = b"atlas/v2/object-encryption";
const LABEL_CONTENT_ID: &[u8] = b"atlas/v2/content-id";
const LABEL_NAME: &[u8] = b"atlas/v2/key-names";

/// The keys the repository actually uses, derived once per open.
#[derive(Clone)]
pub(crate) struct RepoKeys {
    /// Kept to re-wrap under a new passphrase and to read v1 objects.
    pub(crate) data: DataKey,
    /// AES-256-GCM key for every new-format object.
    pub(crate) enc: Zeroizing<[u8; 32]>,
    /// HMAC key for content ids.
    pub(crate) id: Zeroizing<[u8; 32]>,
    /// HMAC key for mailbox names in store keys.
    pub(crate) name: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for RepoKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RepoKeys(<redacted>)")
    }
}

impl RepoKeys {
    pub(crate) fn derive(data: DataKey) -> Self {
        let enc = hmac_derive(data.expose_secret(), LABEL_ENCRYPT);
        let id = hmac_derive(data.expose_secret(), LABEL_CONTENT_ID);
        let name = hmac_derive(data.expose_secret(), LABEL_NAME);
        Self {
            data,
            enc,
            id,
            name,
        }
    }
}

/// `HMAC-SHA256(key, label)`: a one-block HKDF-Expand equivalent, enough because the data
/// key is already uniformly random.
fn hmac_derive(key: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("invariant: HMAC takes any key length");
    mac.update(label);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_is_redacted() {
        let p = Passphrase::new("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
        let k = DataKey::from_bytes([7; 32]);
        assert_eq!(format!("{k:?}"), "DataKey(<redacted>)");
        assert!(!format!("{:?}", RepoKeys::derive(k)).contains('7'));
    }

    #[test]
    fn derived_keys_are_distinct() {
        let keys = RepoKeys::derive(DataKey::from_bytes([1; 32]));
        assert_ne!(*keys.enc, *keys.id);
        assert_ne!(*keys.id, *keys.name);
        assert_ne!(*keys.enc, [1; 32]);
    }
}
