//! S3 failures become [`StoreError`]s here, in one function, once.
//!
//! Meanings become variants (a missing bucket, credentials the server does not accept, a
//! wrong region, clock skew, a DNS or TLS failure), so callers — the CLI adding its
//! setting names, a service deciding what to retry — match on types, never on text. Each
//! carries what helps to fix it (bucket, endpoint, the region the server wants, the
//! rejected certificate's subject and issuer) and never a secret. The few failures that
//! only one operation can meet (a refused retention, a copy the server cannot do) are
//! decided by that operation first and fall back to this function.

use std::fmt::Write as _;

use atlas_core::ports::StoreError;
use atlas_core::ports::blob_store::CredentialProblem;
use atlas_net::NetFailure;

use super::client::{Inner, Resp, io_error};

/// What went wrong: an answer the server gave, or no usable answer at all.
#[derive(Clone, Copy)]
pub(super) enum Outcome<'a> {
    /// An HTTP response that is not a success.
    Response(&'a Resp),
    /// The request failed below HTTP (after `attempts` attempts).
    Transport {
        error: &'a reqwest::Error,
        attempts: u32,
    },
}

/// Translate a failure of operation `op` on `key` (an Atlas key, or the bucket).
pub(super) fn translate(inner: &Inner, key: &str, op: &str, outcome: Outcome<'_>) -> StoreError {
    match outcome {
        Outcome::Response(resp) => from_response(inner, key, op, resp),
        Outcome::Transport { error, attempts } => from_transport(inner, key, error, attempts),
    }
}

fn from_response(inner: &Inner, key: &str, op: &str, resp: &Resp) -> StoreError {
    let err = resp.error();
    let status = resp.status.as_u16();
    let place = inner.place();
    let bucket = || inner.cfg.bucket.clone();
    let endpoint = || inner.endpoint.shown.clone();
    let server = if err.message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("{} (HTTP {status})", err.message)
    };
    let bad_credentials = |problem| StoreError::BadCredentials {
        bucket: bucket(),
        endpoint: endpoint(),
        problem,
    };
    // S3 names the bucket's region in a header on redirects and HEAD errors, in the body
    // of `AuthorizationHeaderMalformed`.
    let server_region = resp
        .header("x-amz-bucket-region")
        .map(str::to_owned)
        .or_else(|| err.region.clone().filter(|r| !r.is_empty()));
    match err.code.as_str() {
        "NoSuchKey" => StoreError::NotFound {
            key: key.to_string(),
        },
        "NoSuchBucket" => StoreError::BucketMissing {
            bucket: bucket(),
            endpoint: endpoint(),
        },
        "InvalidAccessKeyId" => bad_credentials(CredentialProblem::UnknownAccessKey),
        "SignatureDoesNotMatch" => bad_credentials(CredentialProblem::SignatureMismatch),
        "RequestTimeTooSkewed" => StoreError::ClockSkew {
            endpoint: endpoint(),
            server_time: err.server_time.clone().filter(|t| !t.is_empty()),
        },
        "AuthorizationHeaderMalformed"
        | "PermanentRedirect"
        | "IllegalLocationConstraintException" => StoreError::WrongRegion {
            bucket: bucket(),
            endpoint: endpoint(),
            region: inner.cfg.region.clone(),
            server_region,
        },
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => StoreError::AccessDenied {
            key: key.to_string(),
            detail: format!(
                "{op}: {server} — the credentials lack permission for this operation ({place})"
            ),
        },
        "BucketAlreadyExists" => StoreError::AccessDenied {
            key: key.to_string(),
            detail: format!(
                "{op}: the bucket name is taken by another account ({place}) — use a bucket \
                 you own"
            ),
        },
        "InvalidDigest" | "BadDigest" | "XAmzContentSHA256Mismatch" => io_error(
            std::io::ErrorKind::InvalidData,
            key,
            format!("{op}: the upload was damaged in transit and refused: {server} ({place})"),
        ),
        "PreconditionFailed" => StoreError::AlreadyExists {
            key: key.to_string(),
        },
        _ => match status {
            // A bucket-level request without a code (HEAD has no body): the bucket.
            404 if resp.bucket_level => StoreError::BucketMissing {
                bucket: bucket(),
                endpoint: endpoint(),
            },
            404 if op == "read" => StoreError::NotFound {
                key: key.to_string(),
            },
            301 | 307 if server_region.is_some() => StoreError::WrongRegion {
                bucket: bucket(),
                endpoint: endpoint(),
                region: inner.cfg.region.clone(),
                server_region,
            },
            403 => StoreError::AccessDenied {
                key: key.to_string(),
                detail: format!("{op}: {server} ({place})"),
            },
            412 => StoreError::AlreadyExists {
                key: key.to_string(),
            },
            429 | 500..=599 => StoreError::Transient {
                key: key.to_string(),
                detail: format!("{op}: {} {server} ({place})", err.code),
            },
            _ => io_error(
                std::io::ErrorKind::Other,
                key,
                format!("{op}: S3 error {} {server} ({place})", err.code),
            ),
        },
    }
}

fn from_transport(inner: &Inner, what: &str, e: &reqwest::Error, attempts: u32) -> StoreError {
    let virtual_hosted_bucket = (!inner.endpoint.path_style).then(|| inner.cfg.bucket.clone());
    match atlas_net::classify(e) {
        Some(NetFailure::Dns { host, detail }) => {
            return StoreError::Dns {
                virtual_hosted_bucket: virtual_hosted_bucket
                    .filter(|b| host.starts_with(&format!("{b}."))),
                host,
                detail,
            };
        }
        Some(NetFailure::Tls {
            reason,
            subject,
            issuer,
        }) => {
            return StoreError::Tls {
                host: inner.host(),
                reason,
                subject,
                issuer,
            };
        }
        None => {}
    }
    if e.is_builder() {
        // The URL could not be built: with the bucket in front of the endpoint's host, the
        // host name is invalid (an IP address or a name that is no DNS name).
        return StoreError::Dns {
            host: inner.host(),
            detail: "not a valid host name".to_owned(),
            virtual_hosted_bucket,
        };
    }
    let mut cause = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(cause, ": {s}");
        source = s.source();
    }
    if e.is_connect() {
        io_error(
            std::io::ErrorKind::ConnectionRefused,
            what,
            format!(
                "cannot connect to the S3 endpoint {} ({}) after {attempts} attempt(s){cause} \
                 — check the endpoint and that the server is running and reachable",
                inner.endpoint.shown,
                inner.place()
            ),
        )
    } else {
        StoreError::Transient {
            key: what.to_string(),
            detail: format!(
                "{} after {attempts} attempt(s){cause} ({})",
                if e.is_timeout() {
                    "timed out"
                } else {
                    "connection failed"
                },
                inner.place()
            ),
        }
    }
}
