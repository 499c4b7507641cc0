//! AWS Signature Version 4 for S3 requests, in headers (not presigned URLs).
//!
//! Every header Atlas sends that S3 interprets (`content-md5`, `if-none-match`, `range`,
//! the `x-amz-*` Object Lock headers) is signed, so a proxy cannot alter or drop them
//! unnoticed. The payload itself is signed (`x-amz-content-sha256` is the SHA-256 of the
//! body) only over plain http across a network; over TLS or loopback it is
//! `UNSIGNED-PAYLOAD`, and the signed checksum header is the body's integrity check.
//!
//! Pinned by the worked examples in the S3 API reference ("Signature Calculations for the
//! Authorization Header"), see the tests below.

use std::fmt;
use std::fmt::Write as _;

use atlas_core::SecretString;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// SigV4 "URI encoding": everything except the unreserved characters `A-Za-z0-9-._~`.
const URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encode one path segment or query component the way SigV4 canonicalises it.
pub(crate) fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, URI_ENCODE).to_string()
}

/// The `x-amz-content-sha256` value of a request whose body is not part of the signature
/// (allowed by SigV4; used over TLS and loopback, where a checksum header protects the body).
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Hex SHA-256 of a payload, for `x-amz-content-sha256`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Static S3 credentials. The secret is zeroed on drop and never printed.
#[derive(Clone)]
pub struct Credentials {
    access_key: String,
    secret_key: SecretString,
}

impl Credentials {
    /// Access key id and secret access key.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: SecretString::new(secret_key),
        }
    }

    /// The access key id (not secret; S3 echoes it in error messages).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// The parts of a request that SigV4 covers.
pub(crate) struct SignInput<'a> {
    pub method: &'a str,
    /// Already URI-encoded path, starting with `/`.
    pub canonical_uri: &'a str,
    /// Already encoded `name=value` pairs, sorted, joined by `&`.
    pub canonical_query: &'a str,
    /// Lower-case header names with their values; must include `host`, `x-amz-date` and
    /// `x-amz-content-sha256`. Sorted here.
    pub headers: &'a [(String, String)],
    pub payload_sha256: &'a str,
}

/// The `x-amz-date` value for `now`.
pub(crate) fn amz_date(now: DateTime<Utc>) -> String {
    now.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Compute the `Authorization` header value.
pub(crate) fn authorization(
    creds: &Credentials,
    region: &str,
    now: DateTime<Utc>,
    input: &SignInput<'_>,
) -> String {
    let mut headers: Vec<(&str, String)> = input
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.trim().to_string()))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let canonical_headers = headers
        .iter()
        .fold(String::new(), |mut out, (name, value)| {
            let _ = writeln!(out, "{name}:{value}");
            out
        });
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        input.method,
        input.canonical_uri,
        input.canonical_query,
        canonical_headers,
        signed_headers,
        input.payload_sha256
    );
    let date = now.format("%Y%m%d").to_string();
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        amz_date(now),
        sha256_hex(canonical_request.as_bytes())
    );
    let key = Zeroizing::new(format!("AWS4{}", creds.secret_key.expose()));
    let k_date = hmac(key.as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed_headers},Signature={signature}",
        creds.access_key
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut mac = HmacSha256::new_from_slice(key).expect("invariant: HMAC accepts any key length");
    mac.update(data);
    Zeroizing::new(mac.finalize().into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn example_creds() -> Credentials {
        Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
    }

    fn example_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap()
    }

    fn h(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    /// S3 API reference, "Example: GET Object" (first 10 bytes of test.txt).
    #[test]
    fn aws_example_get_object() {
        let headers = [
            h("host", "examplebucket.s3.amazonaws.com"),
            h("range", "bytes=0-9"),
            h("x-amz-content-sha256", EMPTY_SHA),
            h("x-amz-date", "20130524T000000Z"),
        ];
        let auth = authorization(
            &example_creds(),
            "us-east-1",
            example_time(),
            &SignInput {
                method: "GET",
                canonical_uri: "/test.txt",
                canonical_query: "",
                headers: &headers,
                payload_sha256: EMPTY_SHA,
            },
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// S3 API reference, "Example: GET Bucket (List Objects)" — a request with a query.
    #[test]
    fn aws_example_list_objects() {
        let headers = [
            h("host", "examplebucket.s3.amazonaws.com"),
            h("x-amz-content-sha256", EMPTY_SHA),
            h("x-amz-date", "20130524T000000Z"),
        ];
        let auth = authorization(
            &example_creds(),
            "us-east-1",
            example_time(),
            &SignInput {
                method: "GET",
                canonical_uri: "/",
                canonical_query: "max-keys=2&prefix=J",
                headers: &headers,
                payload_sha256: EMPTY_SHA,
            },
        );
        assert!(
            auth.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
    }

    #[test]
    fn uri_encoding_of_key_characters() {
        assert_eq!(uri_encode("a.b_c-d~e"), "a.b_c-d~e");
        assert_eq!(uri_encode("first+tag@x=y"), "first%2Btag%40x%3Dy");
        assert_eq!(uri_encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", example_creds());
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"));
    }
}
