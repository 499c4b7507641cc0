//! Opening and creating a repository: the passphrase-wrapped data key (`_meta/dek.enc`),
//! the derived keys (through the process-wide [`super::cache`]), the repository config,
//! and passphrase changes.
//!
//! Creation is race-free: the key blob and the config are written create-if-absent, and
//! a process that loses either race reads back and uses the winner's.
//!
//! # Spare copies of the root objects
//!
//! Everything in a repository hangs off two small objects: the wrapped key (without it no
//! byte can be decrypted) and the config. Each has a spare copy (`_meta/dek.spare`, a byte
//! copy; `_meta/config.spare`, the same config sealed under its own key name), written
//! next to it by every writer that finds it missing. When a primary is missing or does
//! not open, [`Repository::open`] uses the spare and records the damage
//! ([`Repository::root_damage`]): verify reports it and repair writes the primary back.
//!
//! Telling a damaged key blob from a wrong passphrase is possible only because of the
//! spare: AES-GCM cannot tell them apart, but a spare that opens with the same passphrase
//! proves the passphrase right. A passphrase change writes the spare first, then the
//! primary, so a crash between the two leaves each passphrase able to open the
//! repository (the new one through the spare, which repair then makes the primary).

use std::sync::Arc;

use bytes::Bytes;

use super::crypto::ObjectType;
use super::layout::{
    CONFIG_KEY, CONFIG_SPARE_KEY, INDEX_PREFIX, KEY_BLOB_KEY, KEY_SPARE_KEY, PACK_PREFIX,
    SNAPSHOT_PREFIX, store_key,
};
use super::secret::{DataKey, Passphrase, RepoKeys};
use super::{
    FORMAT_VERSION, KdfChoice, RepoConfig, RepoSettings, Repository, VerifyProblem, cache, keyfile,
};
use crate::error::{Error, Result};
use crate::ports::{BlobStore, PutOptions, StoreError};

/// Which root object a [`RootDamage`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RootObject {
    /// The wrapped data key.
    Key,
    /// The repository config.
    Config,
}

/// A root object found missing or damaged when the repository was opened, or whose
/// spare copy is missing or disagrees with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDamage {
    /// Which one.
    pub what: RootObject,
    /// Store key of the damaged or missing copy.
    pub object: String,
    /// What is wrong.
    pub error: String,
    /// Whether the spare stood in for the primary (`false`: the spare itself is the
    /// problem, the primary is fine).
    pub spare_used: bool,
}

impl Repository {
    /// Create a repository (wrapped key, then config), race-free: if another process
    /// created the key first, its key is opened with `passphrase` instead. Refuses nothing
    /// that already exists; an existing repository is simply opened.
    pub async fn init(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
        kdf: KdfChoice,
    ) -> Result<Self> {
        Self::init_with(store, tenant, passphrase, kdf, RepoSettings::default()).await
    }

    /// [`Repository::init`] with explicit settings (used only if this call creates the
    /// config).
    pub async fn init_with(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
        kdf: KdfChoice,
        settings: RepoSettings,
    ) -> Result<Self> {
        Self::init_at_format(store, tenant, passphrase, kdf, settings, FORMAT_VERSION).await
    }

    /// [`Repository::init_with`] creating the repository at an earlier format that this
    /// build still writes (2 to [`FORMAT_VERSION`]): a repository keeps the format it was
    /// created with, so this writes exactly what a repository made by an older build gets
    /// from this one. For comparing formats on the same data (`atlas-bench formats`) and
    /// for tests; an existing repository keeps its format whatever is asked.
    pub async fn init_at_format(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
        kdf: KdfChoice,
        settings: RepoSettings,
        format_version: u32,
    ) -> Result<Self> {
        settings.check()?;
        if !(super::MAIL_ONLY_FORMAT_VERSION..=FORMAT_VERSION).contains(&format_version) {
            return Err(Error::invalid(format!(
                "format version {format_version}: this build writes {}..={FORMAT_VERSION}",
                super::MAIL_ONLY_FORMAT_VERSION
            )));
        }
        if tenant.is_empty() {
            return Err(Error::invalid("empty tenant id"));
        }
        let key = store_key(KEY_BLOB_KEY)?;
        let keys = match store.get(&key).await {
            Ok(_) => {
                return Self::open_for_writing(store, tenant, passphrase, settings, format_version)
                    .await;
            }
            Err(StoreError::NotFound { .. }) if has_key_blob(&store).await? => {
                // Only the spare is left: open with it (repair writes the primary back).
                return Self::open_for_writing(store, tenant, passphrase, settings, format_version)
                    .await;
            }
            Err(StoreError::NotFound { .. }) => {
                let dek = DataKey::generate();
                let (pw, t, d) = (passphrase.clone(), tenant.to_owned(), dek.clone());
                let blob = tokio::task::spawn_blocking(move || keyfile::wrap(&d, &pw, &t, kdf))
                    .await
                    .map_err(|e| Error::task(&e))??;
                let blob = Bytes::from(blob);
                match store.put(&key, blob.clone(), PutOptions::CREATE).await {
                    Ok(()) => {
                        cache::remember(&store, tenant, passphrase, &blob, RepoKeys::derive(dek))
                    }
                    Err(StoreError::AlreadyExists { .. }) => {
                        // Lost the race: open the winner's key (same passphrase expected).
                        let theirs = store.get(&key).await.map_err(Error::from_store_required)?;
                        cache::unlock(&store, tenant, passphrase, theirs).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let repo = Self::from_parts(store, tenant, keys);
        repo.ensure_config(settings, format_version).await?;
        repo.ensure_spares().await?;
        Ok(repo)
    }

    /// Open an existing repository for a writer: add the config if it lacks one (a
    /// TypeScript Atlas bucket, an interrupted init) and the spare copies of the root
    /// objects if it lacks them (a repository written before spares existed).
    async fn open_for_writing(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
        settings: RepoSettings,
        format_version: u32,
    ) -> Result<Self> {
        let repo = Self::open(store, tenant, passphrase).await?;
        repo.ensure_config(settings, format_version).await?;
        repo.ensure_spares().await?;
        Ok(repo)
    }

    /// Open an existing repository. Distinguishes [`Error::NotInitialized`] (no key),
    /// [`Error::WrongPassphrase`], [`Error::Corrupt`] (bad key blob or config) and
    /// [`Error::UnsupportedVersion`]. A TypeScript Atlas bucket (key, no config) opens with
    /// [`Repository::config`] = `None`; it can be read but not written until
    /// [`Repository::open_or_init`] adds a config.
    pub async fn open(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
    ) -> Result<Self> {
        Self::open_inner(store, tenant, passphrase, false).await
    }

    /// [`Repository::open`] for repair: a config that cannot be read at all (both copies
    /// damaged) does not fail the open; it is recorded in [`Repository::root_damage`] and
    /// the repository opens without a config, so that repair can write a new one.
    pub async fn open_for_repair(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
    ) -> Result<Self> {
        Self::open_inner(store, tenant, passphrase, true).await
    }

    async fn open_inner(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
        tolerate_config: bool,
    ) -> Result<Self> {
        let primary = match store.get(&store_key(KEY_BLOB_KEY)?).await {
            Ok(blob) => Some(blob),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let spare = match store.get(&store_key(KEY_SPARE_KEY)?).await {
            Ok(blob) => Some(blob),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let mut damage = Vec::new();
        let keys = match (primary, spare) {
            (None, None) => {
                return Err(Error::NotInitialized {
                    store: store.describe(),
                });
            }
            (Some(blob), spare) => {
                match cache::unlock(&store, tenant, passphrase, blob.clone()).await {
                    Ok(keys) => {
                        if spare.as_ref() != Some(&blob) && spare.is_some() {
                            damage.push(RootDamage {
                                what: RootObject::Key,
                                object: KEY_SPARE_KEY.into(),
                                error: "the spare copy differs from the wrapped key".into(),
                                spare_used: false,
                            });
                        }
                        keys
                    }
                    // A spare that opens with this passphrase proves the passphrase right
                    // and the primary damaged.
                    Err(e) if Self::key_failure(&e) => match spare {
                        // The same bytes cannot open either: a wrong passphrase.
                        Some(spare) if spare != blob => {
                            match cache::unlock(&store, tenant, passphrase, spare).await {
                                Ok(keys) => {
                                    damage.push(RootDamage {
                                        what: RootObject::Key,
                                        object: KEY_BLOB_KEY.into(),
                                        error: e.to_string(),
                                        spare_used: true,
                                    });
                                    keys
                                }
                                Err(_) => return Err(e),
                            }
                        }
                        _ => return Err(e),
                    },
                    Err(e) => return Err(e),
                }
            }
            (None, Some(spare)) => {
                let keys = cache::unlock(&store, tenant, passphrase, spare).await?;
                damage.push(RootDamage {
                    what: RootObject::Key,
                    object: KEY_BLOB_KEY.into(),
                    error: Error::Missing {
                        key: KEY_BLOB_KEY.into(),
                    }
                    .to_string(),
                    spare_used: true,
                });
                keys
            }
        };
        let repo = Self::from_parts(store, tenant, keys);
        repo.record_root_damage(damage);
        match repo.load_config().await {
            Ok(_) => {}
            Err(e) if tolerate_config && e.is_integrity_failure() => {
                repo.record_root_damage(vec![RootDamage {
                    what: RootObject::Config,
                    object: CONFIG_KEY.into(),
                    error: e.to_string(),
                    spare_used: false,
                }]);
            }
            Err(e) => return Err(e),
        }
        Ok(repo)
    }

    /// Failures of a key blob that a spare may stand in for (not I/O errors).
    fn key_failure(e: &Error) -> bool {
        e.is_integrity_failure()
            || matches!(
                e,
                Error::WrongPassphrase { .. } | Error::UnsupportedVersion { .. }
            )
    }

    fn record_root_damage(&self, damage: Vec<RootDamage>) {
        let mut held = self
            .inner
            .root_damage
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for d in damage {
            held.retain(|h| h.object != d.object);
            held.push(d);
        }
    }

    /// Check the root objects again, with the errors of the copies that are damaged:
    /// the wrapped key and the config must both be present and readable, and their spares
    /// (when present) must agree with them. A repository written before spares existed
    /// has none, which is not damage.
    pub async fn check_root_objects(&self) -> Vec<VerifyProblem> {
        let mut out = Vec::new();
        let problem = |object: &str, error: Error| VerifyProblem {
            object: object.to_owned(),
            content_id: None,
            error,
        };
        for d in self.root_damage() {
            if d.what == RootObject::Key {
                let error = if d.error.contains("missing") {
                    Error::Missing {
                        key: d.object.clone(),
                    }
                } else {
                    Error::corrupt(&d.object, d.error.clone())
                };
                out.push(problem(&d.object, error));
            }
        }
        let primary = self.read_config_copy(CONFIG_KEY).await;
        let spare = self.read_config_copy(CONFIG_SPARE_KEY).await;
        if let Ok(None) = &primary {
            out.push(problem(
                CONFIG_KEY,
                Error::Missing {
                    key: CONFIG_KEY.into(),
                },
            ));
        }
        match (primary, spare) {
            (Err(e), _) => out.push(problem(CONFIG_KEY, e)),
            (_, Err(e)) => out.push(problem(CONFIG_SPARE_KEY, e)),
            (Ok(Some(p)), Ok(Some(s))) if p != s => out.push(problem(
                CONFIG_SPARE_KEY,
                Error::corrupt(CONFIG_SPARE_KEY, "the spare copy differs from the config"),
            )),
            _ => {}
        }
        out
    }

    /// Root objects found missing or damaged (or whose spare is) when the repository was
    /// opened; see the module docs. Empty for a healthy repository.
    pub fn root_damage(&self) -> Vec<RootDamage> {
        self.inner
            .root_damage
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Open, or create when the store holds no key yet; also adds the config to a
    /// repository that lacks one (a TypeScript Atlas bucket or an interrupted init).
    pub async fn open_or_init(
        store: Arc<dyn BlobStore>,
        tenant: &str,
        passphrase: &Passphrase,
        kdf: KdfChoice,
    ) -> Result<Self> {
        Self::init(store, tenant, passphrase, kdf).await
    }
    /// Read one copy of the config: `Ok(None)` when it is absent.
    async fn read_config_copy(&self, key: &str) -> Result<Option<RepoConfig>> {
        let bytes = match self.inner.store.get(&store_key(key)?).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let cfg: RepoConfig = self.open_json(ObjectType::Config, key, &bytes)?;
        if cfg.format_version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "repository format".into(),
                found: cfg.format_version,
                supported: FORMAT_VERSION,
            });
        }
        cfg.settings
            .check()
            .map_err(|_| Error::corrupt(key, "settings out of range"))?;
        Ok(Some(cfg))
    }

    /// Load the config, from its spare when the primary is missing or damaged (recorded
    /// in [`Repository::root_damage`]). `Ok(None)`: neither copy exists.
    async fn load_config(&self) -> Result<Option<RepoConfig>> {
        let primary = self.read_config_copy(CONFIG_KEY).await;
        let spare = self.read_config_copy(CONFIG_SPARE_KEY).await;
        let cfg = match (primary, spare) {
            (Ok(Some(p)), spare) => {
                let disagree = match &spare {
                    Ok(Some(s)) if *s == p => None,
                    Ok(Some(_)) => Some("the spare copy differs from the config".to_owned()),
                    Ok(None) => None,
                    Err(e) => Some(e.to_string()),
                };
                if let Some(error) = disagree {
                    self.record_root_damage(vec![RootDamage {
                        what: RootObject::Config,
                        object: CONFIG_SPARE_KEY.into(),
                        error,
                        spare_used: false,
                    }]);
                }
                Some(p)
            }
            (Ok(None), Ok(None)) => None,
            (primary, Ok(Some(s))) => {
                let error = match primary {
                    Err(e) => e.to_string(),
                    Ok(_) => Error::Missing {
                        key: CONFIG_KEY.into(),
                    }
                    .to_string(),
                };
                self.record_root_damage(vec![RootDamage {
                    what: RootObject::Config,
                    object: CONFIG_KEY.into(),
                    error,
                    spare_used: true,
                }]);
                Some(s)
            }
            // No usable copy: the primary's own error (or the spare's when the primary
            // is simply absent).
            (Err(e), _) | (Ok(None), Err(e)) => return Err(e),
        };
        if let Some(cfg) = &cfg {
            *self
                .inner
                .config
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cfg.clone());
        }
        Ok(cfg)
    }

    /// Whether the store holds any repository data (snapshot records, index files or
    /// packs): a repository with data but no config lost its config, and writing a fresh
    /// one would silently give it a new identity and settings.
    pub(crate) async fn has_data(&self) -> Result<bool> {
        for prefix in [SNAPSHOT_PREFIX, INDEX_PREFIX, PACK_PREFIX] {
            if !self.inner.store.list(prefix).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn ensure_config(&self, settings: RepoSettings, format_version: u32) -> Result<()> {
        if self.load_config().await?.is_some() {
            return Ok(());
        }
        if self.has_data().await? {
            return Err(Error::NeedsRepair {
                reason: format!(
                    "the repository config is missing from {} although the repository holds data",
                    self.inner.store.describe()
                ),
            });
        }
        self.write_new_config(settings, format_version).await
    }

    /// Write a fresh config (new repository id) create-if-absent, then read back whichever
    /// config is in force.
    pub(crate) async fn write_new_config(
        &self,
        settings: RepoSettings,
        format_version: u32,
    ) -> Result<()> {
        let cfg = RepoConfig {
            format_version,
            repo_id: uuid::Uuid::new_v4(),
            created_by: format!("atlas-core {}", env!("CARGO_PKG_VERSION")),
            settings,
        };
        let sealed = self.seal_json(ObjectType::Config, CONFIG_KEY, &cfg)?;
        match self
            .inner
            .store
            .put(&store_key(CONFIG_KEY)?, sealed, PutOptions::CREATE)
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // Read back: if another process won the race, its config is the one in force.
        self.load_config().await?;
        self.require_config().map(|_| ())
    }

    /// Write the spare copies that are missing, from the primaries (never over a primary
    /// found damaged: then the spare is the good copy). Writers call this, so repositories
    /// written before spares existed get them with their next backup.
    pub(crate) async fn ensure_spares(&self) -> Result<()> {
        let damaged: Vec<String> = self.root_damage().into_iter().map(|d| d.object).collect();
        if !damaged.iter().any(|o| o == KEY_BLOB_KEY)
            && self
                .inner
                .store
                .head(&store_key(KEY_SPARE_KEY)?)
                .await?
                .is_none()
        {
            let blob = self.get_required(KEY_BLOB_KEY).await?;
            self.put_if_absent(KEY_SPARE_KEY, blob).await?;
        }
        if let Some(cfg) = self.config() {
            if !damaged.iter().any(|o| o == CONFIG_KEY)
                && self
                    .inner
                    .store
                    .head(&store_key(CONFIG_SPARE_KEY)?)
                    .await?
                    .is_none()
            {
                let sealed = self.seal_json(ObjectType::Config, CONFIG_SPARE_KEY, &cfg)?;
                self.put_if_absent(CONFIG_SPARE_KEY, sealed).await?;
            }
        }
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<()> {
        match self
            .inner
            .store
            .put(&store_key(key)?, bytes, PutOptions::CREATE)
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-wrap the data key under a new passphrase (and KDF). The old passphrase stops
    /// working; no data object changes. The store's atomic overwrite means a crash leaves
    /// either the old or the new blob, each valid with its passphrase.
    pub async fn change_passphrase(&self, new: &Passphrase, kdf: KdfChoice) -> Result<()> {
        let dek = self.keys().data.clone();
        let (pw, tenant) = (new.clone(), self.inner.tenant.clone());
        let blob = tokio::task::spawn_blocking(move || keyfile::wrap(&dek, &pw, &tenant, kdf))
            .await
            .map_err(|e| Error::task(&e))??;
        let blob = Bytes::from(blob);
        // Spare first: a crash in between leaves the old passphrase opening the primary and
        // the new one opening the spare (see the module docs).
        for key in [KEY_SPARE_KEY, KEY_BLOB_KEY] {
            self.inner
                .store
                .put(&store_key(key)?, blob.clone(), PutOptions::OVERWRITE)
                .await?;
        }
        cache::forget_store(&self.inner.store, &self.inner.tenant);
        cache::remember(
            &self.inner.store,
            &self.inner.tenant,
            new,
            &blob,
            (*self.keys()).clone(),
        );
        Ok(())
    }
}

/// Whether `store` holds a wrapped data key or its spare (any Atlas repository, either
/// format).
pub async fn has_key_blob(store: &Arc<dyn BlobStore>) -> Result<bool> {
    for key in [KEY_BLOB_KEY, KEY_SPARE_KEY] {
        if store.head(&store_key(key)?).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `store` holds a repository config or its spare (a current-format repository).
pub async fn has_config(store: &Arc<dyn BlobStore>) -> Result<bool> {
    for key in [CONFIG_KEY, CONFIG_SPARE_KEY] {
        if store.head(&store_key(key)?).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}
