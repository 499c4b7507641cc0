//! Id newtypes: the one vocabulary of ids in Atlas.
//!
//! The ports speak these types and the adapters map their wire formats to them once, at
//! their edge (`atlas-graph` turns Graph's JSON strings into [`FolderId`] and [`ItemId`]
//! when it parses a response), so no id is converted back and forth between crates and a
//! folder id can never be passed where an item id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A mailbox: its address (UPN or primary SMTP address, lower-cased) and, when known, the
/// Graph user id.
///
/// Equality and hashing use the address only; the address is what keys the mailbox in the
/// repository (as a keyed hash, never in clear).
#[derive(Clone, Serialize, Deserialize)]
pub struct MailboxId {
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    graph_user_id: Option<String>,
}

impl MailboxId {
    /// A mailbox by address; the address is trimmed and lower-cased (Exchange addresses
    /// are case-insensitive, and the old tool split catalogs on case).
    pub fn new(address: &str) -> Self {
        Self {
            address: address.trim().to_lowercase(),
            graph_user_id: None,
        }
    }

    /// Attach the Graph user id (kept for display and for Graph calls; not part of
    /// identity).
    #[must_use]
    pub fn with_graph_user_id(mut self, id: impl Into<String>) -> Self {
        self.graph_user_id = Some(id.into());
        self
    }

    /// The lower-cased address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The Graph user id, if known.
    pub fn graph_user_id(&self) -> Option<&str> {
        self.graph_user_id.as_deref()
    }
}

impl PartialEq for MailboxId {
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address
    }
}
impl Eq for MailboxId {}
impl std::hash::Hash for MailboxId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.address.hash(state);
    }
}
impl PartialOrd for MailboxId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MailboxId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.address.cmp(&other.address)
    }
}

impl fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailboxId({})", self.address)
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wrap an id as the source returned it (ids are opaque and case-sensitive).
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            /// The id string, as the source expects it back.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// Unwrap into the inner string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A folder id (Graph's immutable id form when available). Where a source accepts
    /// them, a well-known folder name such as `inbox` is a folder id too.
    FolderId
);
string_id!(
    /// An item id of any kind (a message, an event, a contact …): Graph's immutable id,
    /// requested with `Prefer: IdType="ImmutableId"` so it survives folder moves.
    ItemId
);

/// Mail's name for an [`ItemId`]: a message is the item of kind
/// [`ItemKind::Mail`](super::ItemKind::Mail).
pub type MessageId = ItemId;

/// A snapshot id (random UUID v4). It appears in the snapshot record's key name, so
/// snapshots can be found without decrypting records.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotId(uuid::Uuid);

impl SnapshotId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl From<uuid::Uuid> for SnapshotId {
    fn from(u: uuid::Uuid) -> Self {
        Self(u)
    }
}

impl fmt::Debug for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotId({})", self.0)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for SnapshotId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// The address of a piece of content in the repository: HMAC-SHA256 under a key derived
/// from the tenant's data key (see `docs/FORMAT.md`), so equal content dedups while the
/// name reveals nothing about the plaintext to someone without the key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// Wrap raw bytes (as read from an index or table).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.to_hex())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for ContentId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_id_is_case_insensitive_and_ignores_graph_id() {
        let a = MailboxId::new(" Lucas.Johnson@Contoso.com ");
        let b = MailboxId::new("lucas.johnson@contoso.com").with_graph_user_id("abc");
        assert_eq!(a, b);
        assert_eq!(a.address(), "lucas.johnson@contoso.com");
        assert_eq!(b.graph_user_id(), Some("abc"));
    }

    #[test]
    fn content_id_hex_round_trip() {
        let id = ContentId::from_bytes([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<ContentId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ContentId>(&json).unwrap(), id);
        assert!("zz".parse::<ContentId>().is_err());
    }
}
