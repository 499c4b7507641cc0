//! The one secret string type of Atlas.
//!
//! Passphrases, client secrets, S3 secret keys, access tokens, private keys and
//! pre-authenticated upload URLs all travel in [`SecretString`], from the config loader
//! through the adapters to the one place that hands the value to a KDF or puts it on the
//! wire. One type for all of them (instead of one per crate) means one place to audit:
//!
//! - no `Display`, so it cannot end up in a `format!` or an error message;
//! - a redacted `Debug`, so a `{:?}` of a config or request struct is safe to log;
//! - its bytes are zeroed when it is dropped (clones included);
//! - the only way to read it is [`SecretString::expose`], which makes every use easy to
//!   find in review.
//!
//! Byte keys (the data key and the keys derived from it) have their own types in
//! [`crate::repo`], with the same three properties.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string value; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wrap a value. A `String` moves in, so no unzeroed copy of it stays behind.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret value. Call only where the value is handed to the code that needs it
    /// (a KDF, an HTTP header or body); never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in Unicode scalar values, which is what a person counts as "characters"
    /// (Atlas 1.x counted UTF-8 bytes, which let short non-ASCII passphrases pass).
    pub fn char_len(&self) -> usize {
        self.0.chars().count()
    }

    /// Whether the secret is empty (a configuration mistake worth reporting early).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::SecretString;

    #[test]
    fn debug_does_not_show_the_value() {
        let secret = SecretString::new("hunter2-very-secret");
        let debug = format!("{secret:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(debug, "SecretString(<redacted>)");
        assert_eq!(secret.expose(), "hunter2-very-secret");
    }

    #[test]
    fn char_len_counts_characters_not_bytes() {
        let secret = SecretString::new("äöüäöüäöü".to_owned());
        assert_eq!(secret.char_len(), 9);
        assert_eq!(secret.expose().len(), 18);
    }

    #[test]
    fn dropping_zeroes_the_bytes() {
        // The zeroing is `Zeroizing`'s; this pins that the type keeps using it (a plain
        // `String` field would compile just as well).
        fn assert_zeroizing(_: &zeroize::Zeroizing<String>) {}
        let secret = SecretString::new("x");
        assert_zeroizing(&secret.0);
    }
}
