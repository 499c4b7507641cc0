//! The signed client assertion used by certificate credentials (graph-api.md §1.2).
//!
//! Written with `rsa` directly rather than a JWT library: the token is one fixed header and
//! six claims, and the interesting parts (thumbprint header, PSS vs PKCS#1 v1.5) are exactly
//! what a generic library hides.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::config::AssertionAlgorithm;
use crate::error::{AuthError, AuthErrorKind};
use atlas_core::SecretString;

/// Lifetime of an assertion; Microsoft asks for 5–10 minutes.
pub(crate) const ASSERTION_LIFETIME_SECS: i64 = 600;

/// Signs client assertions with one certificate's private key.
pub(crate) struct AssertionSigner {
    key: RsaPrivateKey,
    algorithm: AssertionAlgorithm,
    /// base64url(SHA-1(cert DER)) for `x5t`.
    x5t: String,
    /// base64url(SHA-256(cert DER)) for `x5t#S256`.
    x5t_s256: String,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("algorithm", &self.algorithm)
            .field("x5t#S256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

fn bad_file(msg: impl Into<String>) -> AuthError {
    AuthError::new(AuthErrorKind::InvalidCredentialFile, msg)
}

/// The base64 body of the first PEM block with this label.
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// The PEM text of the first block with this label (for the key decoders).
fn pem_text<'a>(pem: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let stop = start + pem[start..].find(&end)? + end.len();
    Some(&pem[start..stop])
}

impl AssertionSigner {
    /// Read the certificate and key. Both may be in one combined PEM file.
    pub(crate) fn new(
        cert_pem: &str,
        key_pem: &SecretString,
        algorithm: AssertionAlgorithm,
    ) -> Result<Self, AuthError> {
        let der = pem_block(cert_pem, "CERTIFICATE").ok_or_else(|| {
            bad_file("the certificate file has no readable '-----BEGIN CERTIFICATE-----' block")
        })?;
        let key_text = key_pem.expose();
        let key = if let Some(block) = pem_text(key_text, "PRIVATE KEY") {
            RsaPrivateKey::from_pkcs8_pem(block)
                .map_err(|_| bad_file("the private key (PKCS#8) is not a readable RSA key"))?
        } else if let Some(block) = pem_text(key_text, "RSA PRIVATE KEY") {
            RsaPrivateKey::from_pkcs1_pem(block)
                .map_err(|_| bad_file("the private key (PKCS#1) is not a readable RSA key"))?
        } else if key_text.contains("ENCRYPTED PRIVATE KEY") {
            return Err(bad_file(
                "the private key is encrypted; export it without a passphrase \
                 (e.g. `openssl pkcs8 -nocrypt`) and protect the file instead",
            ));
        } else {
            return Err(bad_file(
                "the key file has no '-----BEGIN PRIVATE KEY-----' or \
                 '-----BEGIN RSA PRIVATE KEY-----' block (only RSA keys are supported)",
            ));
        };
        Ok(Self {
            key,
            algorithm,
            x5t: URL_SAFE_NO_PAD.encode(Sha1::digest(&der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
        })
    }

    /// A signed assertion for `client_id` at token endpoint `audience`, valid from `now`.
    pub(crate) fn sign(&self, client_id: &str, audience: &str, now: i64) -> SecretString {
        let header = match self.algorithm {
            AssertionAlgorithm::Ps256 => {
                serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.x5t_s256})
            }
            AssertionAlgorithm::Rs256 => {
                serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t})
            }
        };
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match self.algorithm {
            AssertionAlgorithm::Ps256 => {
                let key = rsa::pss::BlindedSigningKey::<Sha256>::new(self.key.clone());
                key.sign_with_rng(&mut rand::thread_rng(), signing_input.as_bytes())
                    .to_vec()
            }
            AssertionAlgorithm::Rs256 => {
                let key = rsa::pkcs1v15::SigningKey::<Sha256>::new(self.key.clone());
                key.sign(signing_input.as_bytes()).to_vec()
            }
        };
        SecretString::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::signature::Verifier;

    const FAKE_CERT: &str =
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";

    fn key() -> RsaPrivateKey {
        RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("test key")
    }

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64url")).expect("json")
    }

    #[test]
    fn ps256_and_rs256_assertions_verify_and_carry_the_documented_claims() {
        let key = key();
        let pkcs8 = key.to_pkcs8_pem(LineEnding::LF).expect("pkcs8");
        let pkcs1 = key.to_pkcs1_pem(LineEnding::LF).expect("pkcs1");
        let der = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let aud = "https://login.example/tenant/oauth2/v2.0/token";

        for (pem, alg) in [
            (pkcs8.to_string(), AssertionAlgorithm::Ps256),
            (pkcs1.to_string(), AssertionAlgorithm::Rs256),
        ] {
            let signer =
                AssertionSigner::new(FAKE_CERT, &SecretString::new(pem), alg).expect("signer");
            let jwt = signer.sign("client-1", aud, 1_700_000_000);
            let parts: Vec<&str> = jwt.expose().split('.').collect();
            assert_eq!(parts.len(), 3);
            assert!(!jwt.expose().contains('='), "base64url must be unpadded");
            let header = decode(parts[0]);
            let claims = decode(parts[1]);
            assert_eq!(claims["aud"], aud);
            assert_eq!(claims["iss"], "client-1");
            assert_eq!(claims["sub"], "client-1");
            assert_eq!(claims["nbf"], 1_700_000_000);
            assert_eq!(claims["iat"], 1_700_000_000);
            assert_eq!(claims["exp"], 1_700_000_600);
            assert!(uuid::Uuid::parse_str(claims["jti"].as_str().expect("jti")).is_ok());
            let input = format!("{}.{}", parts[0], parts[1]);
            let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
            let public = key.to_public_key();
            match alg {
                AssertionAlgorithm::Ps256 => {
                    assert_eq!(header["alg"], "PS256");
                    assert_eq!(
                        header["x5t#S256"],
                        URL_SAFE_NO_PAD.encode(Sha256::digest(der))
                    );
                    let vk = rsa::pss::VerifyingKey::<Sha256>::new(public);
                    let sig = rsa::pss::Signature::try_from(sig.as_slice()).expect("sig");
                    vk.verify(input.as_bytes(), &sig).expect("PS256 verifies");
                }
                AssertionAlgorithm::Rs256 => {
                    assert_eq!(header["alg"], "RS256");
                    assert_eq!(header["x5t"], URL_SAFE_NO_PAD.encode(Sha1::digest(der)));
                    let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public);
                    let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).expect("sig");
                    vk.verify(input.as_bytes(), &sig).expect("RS256 verifies");
                }
            }
        }
    }

    #[test]
    fn unreadable_files_are_explained() {
        let err = AssertionSigner::new("nope", &SecretString::new("x"), AssertionAlgorithm::Ps256)
            .expect_err("no cert");
        assert_eq!(err.kind, AuthErrorKind::InvalidCredentialFile);
        let err = AssertionSigner::new(
            FAKE_CERT,
            &SecretString::new(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nabc\n-----END ENCRYPTED PRIVATE KEY-----",
            ),
            AssertionAlgorithm::Ps256,
        )
        .expect_err("encrypted");
        assert!(err.to_string().contains("encrypted"));
        assert!(!err.to_string().contains("abc"));
    }
}
