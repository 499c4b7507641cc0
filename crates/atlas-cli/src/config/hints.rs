//! What to change in the settings when a store or network failure is reported.
//!
//! The store crate names a problem by meaning ([`StoreError`] variants: a missing bucket,
//! rejected credentials, a wrong region, a DNS or TLS failure) and must not know this
//! CLI's variable names; this module maps the meaning to the setting to fix, from the
//! field registry, so the names stay in one place.

use atlas_core::ports::blob_store::CredentialProblem;
use atlas_core::ports::{SourceError, StoreError, TargetError};
use atlas_core::service::restore::RestoreError;

use super::field::{CA_FILE_ENV, Field};

/// The hint for the first store failure in `err`'s chain, if one applies.
pub fn for_error(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        // The core wraps store errors transparently, so they are not a separate link of
        // the chain there.
        let store = cause.downcast_ref::<StoreError>().or_else(|| {
            match cause.downcast_ref::<atlas_core::Error>() {
                Some(atlas_core::Error::Store(e)) => Some(e),
                _ => None,
            }
        });
        // Likewise for the mail source's errors, which carry the Graph adapter's kind
        // (DNS, TLS) across the port.
        let source = cause.downcast_ref::<SourceError>().or_else(|| {
            match cause.downcast_ref::<atlas_core::Error>() {
                Some(atlas_core::Error::Source(e)) => Some(e),
                _ => None,
            }
        });
        // And the restore target's, which the restore service wraps transparently too.
        let target = cause.downcast_ref::<TargetError>().or_else(|| {
            match cause.downcast_ref::<RestoreError>() {
                Some(RestoreError::Target(e)) => Some(e),
                _ => None,
            }
        });
        store
            .and_then(for_store_error)
            .or_else(|| source.and_then(for_source_error))
            .or_else(|| target.and_then(for_target_error))
            .or_else(|| {
                cause
                    .downcast_ref::<atlas_graph::GraphError>()
                    .and_then(for_graph_error)
            })
    })
}

/// The hint for one store failure, if one applies.
pub fn for_store_error(err: &StoreError) -> Option<String> {
    Some(match err {
        StoreError::BucketMissing { .. } => format!(
            "check {} and {}; `atlas init` creates a missing bucket (backups never do), and \
             `atlas storage-check` shows what the server has",
            Field::S3Bucket.env(),
            Field::S3Endpoint.env()
        ),
        StoreError::BadCredentials {
            problem: CredentialProblem::UnknownAccessKey,
            ..
        } => format!(
            "check {} (and that it belongs to this server)",
            Field::S3AccessKey.env()
        ),
        StoreError::BadCredentials { .. } => format!(
            "check {}: it must be the secret of {}",
            Field::S3SecretKey.env(),
            Field::S3AccessKey.env()
        ),
        StoreError::WrongRegion { server_region, .. } => match server_region {
            Some(region) => format!(
                "set {}={region} (or check {})",
                Field::S3Region.env(),
                Field::S3Endpoint.env()
            ),
            None => format!(
                "check {} and {}",
                Field::S3Region.env(),
                Field::S3Endpoint.env()
            ),
        },
        StoreError::ClockSkew { .. } => {
            "synchronise this machine's clock (NTP); S3 refuses requests signed more than 15 \
             minutes off"
                .to_owned()
        }
        StoreError::Tls { .. } => tls_hint(),
        StoreError::Dns {
            virtual_hosted_bucket: Some(_),
            ..
        } => format!(
            "set {}=true: servers without wildcard DNS (MinIO, Ceph, most self-hosted ones) \
             need path-style addressing",
            Field::S3ForcePathStyle.env()
        ),
        StoreError::Dns { .. } => format!("check {}", Field::S3Endpoint.env()),
        StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!(
                "check {} and that the server is running and reachable",
                Field::S3Endpoint.env()
            )
        }
        _ => return None,
    })
}

fn for_graph_error(err: &atlas_graph::GraphError) -> Option<String> {
    match err {
        atlas_graph::GraphError::Tls { .. } => Some(tls_hint()),
        atlas_graph::GraphError::Dns { .. } => Some(graph_dns_hint()),
        _ => None,
    }
}

/// The mail source's failures met during a run (the Graph adapter's DNS and TLS errors,
/// translated by the port) get the same hints as when the client meets them directly.
fn for_source_error(err: &SourceError) -> Option<String> {
    match err {
        SourceError::Dns(_) => Some(graph_dns_hint()),
        SourceError::Tls(_) => Some(tls_hint()),
        _ => None,
    }
}

/// The restore target's DNS and TLS failures (translated by its port): the same hints.
fn for_target_error(err: &TargetError) -> Option<String> {
    match err {
        TargetError::Dns(_) => Some(graph_dns_hint()),
        TargetError::Tls(_) => Some(tls_hint()),
        _ => None,
    }
}

fn graph_dns_hint() -> String {
    format!(
        "check {} (unset, it is Microsoft Graph's global endpoint) and that this machine \
         resolves host names",
        Field::GraphEndpoint.env()
    )
}

fn tls_hint() -> String {
    format!(
        "if the certificate comes from a private or corporate CA (an internal server, TLS \
         inspection), set {CA_FILE_ENV} to that CA's certificate (PEM)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(err: StoreError) -> String {
        for_error(&anyhow::Error::new(err).context("opening the repository")).expect("a hint")
    }

    #[test]
    fn each_store_meaning_names_the_setting_to_fix() {
        let endpoint = || "https://s3.example.com".to_owned();
        let bucket = || "atlas-t".to_owned();
        let cases = [
            (
                StoreError::BucketMissing {
                    bucket: bucket(),
                    endpoint: endpoint(),
                },
                "ATLAS_S3_BUCKET",
            ),
            (
                StoreError::BadCredentials {
                    bucket: bucket(),
                    endpoint: endpoint(),
                    problem: CredentialProblem::UnknownAccessKey,
                },
                "ATLAS_S3_ACCESS_KEY",
            ),
            (
                StoreError::BadCredentials {
                    bucket: bucket(),
                    endpoint: endpoint(),
                    problem: CredentialProblem::SignatureMismatch,
                },
                "ATLAS_S3_SECRET_KEY",
            ),
            (
                StoreError::WrongRegion {
                    bucket: bucket(),
                    endpoint: endpoint(),
                    region: "us-east-1".to_owned(),
                    server_region: Some("eu-west-3".to_owned()),
                },
                "ATLAS_S3_REGION=eu-west-3",
            ),
            (
                StoreError::ClockSkew {
                    endpoint: endpoint(),
                    server_time: None,
                },
                "NTP",
            ),
            (
                StoreError::Dns {
                    host: "atlas-t.s3.example.com".to_owned(),
                    detail: "not found".to_owned(),
                    virtual_hosted_bucket: Some(bucket()),
                },
                "ATLAS_S3_FORCE_PATH_STYLE=true",
            ),
            (
                StoreError::Dns {
                    host: "s3.example.com".to_owned(),
                    detail: "not found".to_owned(),
                    virtual_hosted_bucket: None,
                },
                "ATLAS_S3_ENDPOINT",
            ),
        ];
        for (err, wanted) in cases {
            let shown = format!("{err:?}");
            let hint = hint(err);
            assert!(hint.contains(wanted), "{shown}: {hint}");
        }
    }

    #[test]
    fn a_tls_failure_of_s3_or_graph_names_the_ca_setting() {
        let store = hint(StoreError::Tls {
            host: "s3.internal".into(),
            reason: "unknown issuer".into(),
            subject: None,
            issuer: None,
        });
        assert!(store.contains("ATLAS_CA_FILE"), "{store}");
        let graph = for_error(&anyhow::Error::new(atlas_graph::GraphError::Tls {
            host: "graph.microsoft.com".into(),
            reason: "unknown issuer".into(),
            subject: None,
            issuer: None,
        }))
        .expect("a hint");
        assert!(graph.contains("ATLAS_CA_FILE"), "{graph}");
    }

    #[test]
    fn a_graph_host_that_does_not_resolve_names_the_endpoint_setting() {
        let hint = for_error(&anyhow::Error::new(atlas_graph::GraphError::Dns {
            endpoint: atlas_graph::Endpoint::ListUsers,
            host: "graph.nothing-here.invalid".into(),
        }))
        .expect("a hint");
        assert!(hint.contains("ATLAS_GRAPH_ENDPOINT"), "{hint}");
    }

    /// Met during a run, the same failures come through the mail source port inside the
    /// core's error; the hints must not depend on which path reported them.
    #[test]
    fn graph_dns_and_tls_failures_through_the_source_port_keep_their_hints() {
        let dns = anyhow::Error::new(atlas_core::Error::Source(SourceError::Dns(
            "list_users could not reach graph.nothing-here.invalid".into(),
        )))
        .context("planning the backup");
        assert!(for_error(&dns).is_some_and(|h| h.contains("ATLAS_GRAPH_ENDPOINT")));
        let tls = anyhow::Error::new(SourceError::Tls("certificate refused".into()));
        assert!(for_error(&tls).is_some_and(|h| h.contains("ATLAS_CA_FILE")));
        let other = anyhow::Error::new(atlas_core::Error::Source(SourceError::Other(
            "something else".into(),
        )));
        assert_eq!(for_error(&other), None);
    }

    /// A restore meets them through the target port, inside the restore service's error.
    #[test]
    fn graph_dns_and_tls_failures_through_the_target_port_keep_their_hints() {
        let dns = anyhow::Error::new(RestoreError::Target(TargetError::Dns(
            "get_user could not reach graph.nothing-here.invalid".into(),
        )))
        .context("restoring");
        assert!(for_error(&dns).is_some_and(|h| h.contains("ATLAS_GRAPH_ENDPOINT")));
        let tls = anyhow::Error::new(TargetError::Tls("certificate refused".into()));
        assert!(for_error(&tls).is_some_and(|h| h.contains("ATLAS_CA_FILE")));
        let other = anyhow::Error::new(RestoreError::Target(TargetError::Other(
            "something else".into(),
        )));
        assert_eq!(for_error(&other), None);
    }

    #[test]
    fn other_errors_get_no_hint() {
        let err = anyhow::Error::new(StoreError::NotFound { key: "k".into() });
        assert_eq!(for_error(&err), None);
    }

    /// Through the core's error too: services wrap store errors in `atlas_core::Error`.
    #[test]
    fn a_store_error_inside_a_core_error_is_found() {
        let err = anyhow::Error::new(atlas_core::Error::Store(StoreError::ClockSkew {
            endpoint: "https://s3.example.com".to_owned(),
            server_time: None,
        }));
        assert!(for_error(&err).is_some_and(|h| h.contains("NTP")));
    }
}
