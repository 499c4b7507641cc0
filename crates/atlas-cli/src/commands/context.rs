//! What the Graph-facing commands share: building the Graph client from settings, opening
//! the repository, and Ctrl+C handling.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use atlas_core::open::{Access, CacheStores, Conversion, OpenOptions, Opened};
use atlas_core::ports::{BlobStore, Event, Reporter, SystemClock};
use atlas_core::repo::{KdfChoice, Repository};
use atlas_core::service::Cancel;
use atlas_graph::{Credential as GraphCredential, GraphClient, GraphConfig, SecretString};
use atlas_store::LocalStore;

use crate::config::{Credential, GraphSettings, Inputs, RepositorySettings};
use crate::exit::UsageError;
use crate::output::sanitize;

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
    config.net = settings.net.clone();
    config.scope.clone_from(&settings.graph_scope);
    GraphClient::new(config).context("setting up the Microsoft Graph client")
}

/// What users are told whenever a TypeScript Atlas 1.x repository is opened.
pub(super) const V1_NOTICE: &str = "this is a TypeScript Atlas 1.x repository, opened \
    read-only; Atlas 1.x never recorded deletions, so a snapshot shows every message seen up \
    to it, including messages deleted or moved away before it was taken";

/// The repository opened by this process: a command may open it more than once (argument
/// translation, then the command), and neither the key derivation nor a 1.x conversion
/// check need to run twice. Keyed by store description and tenant.
static OPENED: Mutex<Option<(String, Opened)>> = Mutex::new(None);

/// Open the repository to read it; with `create`, create it first when the store holds
/// none. Only `atlas init` creates repositories (issue 11: a typo in the location must not
/// start a new one), so commands pass `None`; writers use [`open_for_writing`].
pub(super) async fn open_repository(
    settings: &RepositorySettings,
    create: Option<KdfChoice>,
) -> anyhow::Result<Repository> {
    let access = create.map_or(Access::Read, Access::Create);
    Ok(open(settings, access).await?.repo)
}

/// Open an existing repository to write into it (never creating one: see
/// [`require_repository`]; a TypeScript Atlas 1.x repository is refused).
pub(super) async fn open_for_writing(settings: &RepositorySettings) -> anyhow::Result<Repository> {
    Ok(open(settings, Access::Write).await?.repo)
}

/// Refuse a repository location that holds no repository, restic's way: only `atlas init`
/// creates one, so a typo in `ATLAS_REPOSITORY` or the bucket settings is an error, not a
/// new repository somewhere unexpected. A bucket that does not exist holds none either.
pub(super) async fn require_repository(settings: &RepositorySettings) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    let where_ = location(settings);
    let missing = match atlas_core::open::detect(&store).await {
        Ok(format) => format == atlas_core::open::Format::Empty,
        Err(atlas_core::Error::Store(atlas_core::ports::StoreError::BucketMissing { .. })) => true,
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("opening the repository at {where_}"))
            );
        }
    };
    if missing {
        // Exit 1, as every command on a location without a repository (restic's too).
        return Err(atlas_core::Error::NotInitialized { store: where_ }.into());
    }
    Ok(())
}

/// Open whatever the configured store holds through core's one [`atlas_core::open`]: the
/// repository itself, or — for a TypeScript Atlas 1.x bucket, which is never written —
/// its up-to-date cache under `<data dir>/atlas/v1-cache/`.
pub(super) async fn open(settings: &RepositorySettings, access: Access) -> anyhow::Result<Opened> {
    let store = open_store(settings)?;
    let where_ = location(settings);
    let memo_key = format!("{}\n{}", store.describe(), settings.tenant_id);
    if access == Access::Read {
        let memo = OPENED
            .lock()
            .map_err(|_| anyhow::anyhow!("invariant: repository memo poisoned"))?;
        if let Some((key, opened)) = memo.as_ref() {
            if *key == memo_key {
                return Ok(opened.clone());
            }
        }
    }
    let caches = DataDirCaches;
    let reporter = LogReporter { warnings: false };
    let opts = OpenOptions {
        access,
        v1_cache: Some(&caches),
        lease_owner: lease_owner(),
        clock: Arc::new(SystemClock),
        reporter: &reporter,
    };
    let passphrase = core_passphrase(&settings.passphrase);
    let opened = match atlas_core::open(store, &settings.tenant_id, &passphrase, &opts).await {
        Ok(o) => o,
        Err(atlas_core::Error::V1ReadOnly { .. }) => return Err(v1_read_only(&where_).into()),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("opening the repository at {where_}"))
            );
        }
    };
    crate::upkeep::track(&opened.repo);
    opened.repo.set_memory_budget(settings.memory_budget);
    if let Some(v1) = &opened.v1 {
        tracing::warn!("{where_}: {V1_NOTICE}");
        match &v1.conversion {
            Conversion::Converted(summary) => {
                let written = summary.snapshots_written();
                if written > 0 {
                    tracing::info!(
                        "converted {written} new Atlas 1.x snapshot(s) into the cache at {}",
                        v1.cache
                    );
                }
                if !summary.is_complete() {
                    tracing::warn!(
                        "some Atlas 1.x objects could not be read; the affected snapshots are \
                         partial (atlas verify names the damaged objects)"
                    );
                }
            }
            Conversion::Busy => tracing::warn!(
                "another atlas process is updating the v1 cache at {}; using the snapshots \
                 converted so far",
                v1.cache
            ),
        }
    }
    *OPENED
        .lock()
        .map_err(|_| anyhow::anyhow!("invariant: repository memo poisoned"))? =
        Some((memo_key, opened.clone()));
    Ok(opened)
}

/// The refusal of a write into a TypeScript Atlas 1.x repository.
pub(super) fn v1_read_only(where_: &str) -> UsageError {
    UsageError(format!(
        "{where_} is a TypeScript Atlas 1.x repository; Atlas reads it but never writes \
         into the old format. Copy it into a new repository with `atlas migrate --from-v1 \
         --from-dir {where_}` (see docs/MIGRATING.md) and back up into that one"
    ))
}

/// Caches of 1.x repositories: one directory per cache under
/// `<data dir>/atlas/v1-cache/` (the name comes from core).
#[derive(Debug)]
struct DataDirCaches;

impl CacheStores for DataDirCaches {
    fn open(&self, name: &str) -> atlas_core::Result<Arc<dyn BlobStore>> {
        let base = Inputs::from_process(None)
            .ok()
            .and_then(|i| i.data_dir)
            .or_else(dirs::data_dir)
            .ok_or_else(|| atlas_core::Error::InvalidInput {
                reason: "this system has no per-user data directory for the local cache of a \
                         TypeScript Atlas 1.x repository; convert it with atlas migrate \
                         --from-v1 instead"
                    .into(),
            })?;
        let dir = base.join("atlas").join("v1-cache").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| atlas_core::Error::InvalidInput {
            reason: format!(
                "cannot create the v1 cache directory {}: {e}",
                dir.display()
            ),
        })?;
        Ok(Arc::new(LocalStore::new(dir)))
    }
}

/// Logs what a 1.x conversion reports. In the background conversion of the cache only
/// item failures are shown (the deletions caveat is already in [`V1_NOTICE`]).
#[derive(Debug)]
pub(super) struct LogReporter {
    /// Also log the conversion's warnings (`atlas migrate` does).
    pub(super) warnings: bool,
}

impl Reporter for LogReporter {
    fn report(&self, event: Event) {
        match event {
            Event::ItemFailed {
                mailbox,
                item,
                reason,
                ..
            } => tracing::warn!(
                "{}: message {} not converted: {}",
                sanitize(&mailbox),
                sanitize(&item),
                sanitize(&reason)
            ),
            Event::Warning { mailbox, message } if self.warnings => tracing::warn!(
                "{}{}",
                mailbox
                    .map(|m| format!("{}: ", sanitize(&m)))
                    .unwrap_or_default(),
                sanitize(&message)
            ),
            Event::MailboxStarted { mailbox, .. } => {
                tracing::info!(
                    "converting the Atlas 1.x snapshots of {}",
                    sanitize(&mailbox)
                );
            }
            _ => {}
        }
    }
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    // Depth-first search; a node on the current path reached again is a cycle.
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(pos) = path.iter().position(|n| *n == node) {
            panic!("import cycle: {} -> {node}", path[pos..].join(" -> "));
        }
        if !done.insert(node) {
            return;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
    }

    /// The command modules must not import each other in a cycle (issue 12 §2: opening a
    /// repository once made `context` → `v1` → `browse` → `context`). Edges are the
    /// `super::<sibling>` paths in each file's source.
    #[test]
    fn command_modules_have_no_import_cycle() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
        let mut modules = BTreeSet::new();
        let mut sources = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if name == "mod" || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            modules.insert(name.to_owned());
            sources.insert(name.to_owned(), std::fs::read_to_string(&path).unwrap());
        }
        assert!(modules.contains("context") && modules.contains("v1"));
        let edges: BTreeMap<&str, BTreeSet<&str>> = sources
            .iter()
            .map(|(name, text)| {
                let uses = modules
                    .iter()
                    .filter(|m| *m != name)
                    .filter(|m| {
                        text.contains(&format!("super::{m}::"))
                            || text.contains(&format!("super::{m};"))
                            || text.contains(&format!("super::{m},"))
                            || text.contains(&format!("super::{{{m}"))
                    })
                    .map(String::as_str)
                    .collect();
                (name.as_str(), uses)
            })
            .collect();
        let mut done = BTreeSet::new();
        for node in edges.keys() {
            visit(node, &edges, &mut Vec::new(), &mut done);
        }
    }
}
