//! A string secret that cannot leak by accident.
//!
//! Client secrets, S3 secret keys and encryption passphrases travel from the config loader
//! to the adapters in this type. It has no `Display` (so it cannot end up in a `format!` or
//! an error message), a redacted `Debug` (so a `{:?}` of a config struct is safe to log),
//! and its bytes are zeroed when it is dropped. The only way to read it is
//! [`Secret::expose`], which makes every use easy to find in review.

use zeroize::Zeroizing;

/// A secret string value; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap a value. The caller's `String` moves in, so no unzeroed copy stays behind.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret value. Call only where the value is handed to the code that needs it
    /// (a KDF, an HTTP body); never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in Unicode scalar values, which is what a person counts as "characters"
    /// (the old tool counted UTF-8 bytes, which let short non-ASCII passphrases pass).
    pub fn char_len(&self) -> usize {
        self.0.chars().count()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_does_not_show_the_value() {
        let secret = Secret::new("hunter2-very-secret".to_owned());
        let debug = format!("{secret:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(debug, "Secret(<redacted>)");
    }

    #[test]
    fn char_len_counts_characters_not_bytes() {
        let secret = Secret::new("äöüäöüäöü".to_owned());
        assert_eq!(secret.char_len(), 9);
        assert_eq!(secret.expose().len(), 18);
    }
}
