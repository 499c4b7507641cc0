//! What the Graph-facing commands share: building the Graph client from settings, opening
//! the repository, and Ctrl+C handling.

use std::sync::Arc;

use anyhow::Context as _;
use atlas_core::repo::{KdfChoice, Repository};
use atlas_core::service::Cancel;
use atlas_graph::{Credential as GraphCredential, GraphClient, GraphConfig, SecretString};

use crate::config::{Credential, GraphSettings, RepositorySettings};
use crate::exit::UsageError;

use super::key::{core_passphrase, location, open_store};

/// A Graph client for the configured tenant and application.
pub(super) fn graph_client(settings: &GraphSettings) -> anyhow::Result<GraphClient> {
    let credential = match &settings.credential {
        Credential::Secret(secret) => GraphCredential::Secret(secret.clone()),
        Credential::Certificate { certificate, key } => {
            let cert_pem = std::fs::read_to_string(certificate).map_err(|e| {
                UsageError(format!(
                    "cannot read the client certificate {} (ATLAS_CLIENT_CERTIFICATE): {e}",
                    certificate.display()
                ))
            })?;
            let key_pem = std::fs::read_to_string(key).map_err(|e| {
                UsageError(format!(
                    "cannot read the client private key {} (ATLAS_CLIENT_KEY): {e}",
                    key.display()
                ))
            })?;
            GraphCredential::certificate(cert_pem, SecretString::new(key_pem))
        }
    };
    let config = GraphConfig::new(
        settings.tenant_id.clone(),
        settings.client_id.clone(),
        credential,
    )
    .with_endpoints(
        settings.graph_endpoint.as_str().trim_end_matches('/'),
        settings.authority_host.as_str().trim_end_matches('/'),
    );
    let mut config = config;
    config.request_timeout = settings.request_timeout;
    GraphClient::new(config).context("setting up the Microsoft Graph client")
}

/// Open the repository; with `create`, create it first when the store holds none (backup
/// may create the repository, so a first nightly run just works).
pub(super) async fn open_repository(
    settings: &RepositorySettings,
    create: Option<KdfChoice>,
) -> anyhow::Result<Repository> {
    let store = open_store(settings)?;
    // A TypeScript Atlas 1.x bucket: work on its local converted cache (read commands),
    // or refuse (commands that write).
    if let Some(cache) = super::v1::open_if_v1(settings, &store, create.is_some()).await? {
        return Ok(cache);
    }
    let where_ = location(settings);
    let passphrase = core_passphrase(&settings.passphrase);
    let tenant = settings.tenant_id.as_str();
    let repo = match create {
        Some(kdf) => Repository::open_or_init(store, tenant, &passphrase, kdf).await,
        None => Repository::open(store, tenant, &passphrase).await,
    };
    repo.with_context(|| format!("opening the repository at {where_}"))
}

/// The two-stage Ctrl+C of SPEC §5 (and SIGTERM/SIGHUP, see `crate::signals`): the first
/// asks running work to finish what is in flight and commit, the second stops at once.
/// The messages are printed by the signal listener (never with `-q`).
pub(super) fn install_ctrl_c(_quiet: bool) -> Arc<Cancel> {
    crate::signals::work_cancel()
}

/// A lease owner string that tells an administrator where a concurrent run lives.
pub(super) fn lease_owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map_or_else(|_| "unknown-host".to_owned(), |h| h.trim().to_owned());
    format!(
        "atlas {} on {host} (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}
