//! A string that holds a credential: redacted `Debug`, no `Display`, zeroed on drop.
//!
//! Client secrets, access tokens, private keys and pre-authenticated upload URLs all
//! travel in this type, so a stray `{:?}` in a log line or an error can never leak them.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string. Deliberately has no `Display` and a redacted `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wrap a secret; the caller's copy should be dropped (or zeroized) afterwards.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself, for the one place that must send it over the wire.
    pub fn expose(&self) -> &str {
        self.0.as_str()
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
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::new("hunter2-super-secret");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(s.expose(), "hunter2-super-secret");
    }
}
