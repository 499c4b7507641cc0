//! Newtypes for the identifiers Graph hands out, so a folder id can never be passed where a
//! message id is expected, and a mailbox address never ends up as a folder name.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wrap an identifier as Graph returned it (ids are opaque and case-sensitive).
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The identifier as Graph expects it back.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwrap into the inner string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
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

id_type!(
    /// A mailbox as Graph addresses it in `/users/{…}`: the directory object id (GUID) or
    /// the user principal name. Also the key of the per-mailbox limiter, so use one form
    /// consistently per mailbox (the object id is best: it survives renames).
    MailboxId
);
id_type!(
    /// A mail folder id, or a well-known folder name such as `inbox`.
    FolderId
);
id_type!(
    /// A message id (immutable id: every request asks for `IdType="ImmutableId"`).
    MessageId
);
id_type!(
    /// An attachment id within one message.
    AttachmentId
);
