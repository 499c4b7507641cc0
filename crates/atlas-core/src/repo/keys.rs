//! Opening and creating a repository: the passphrase-wrapped data key (`_meta/dek.enc`),
//! the derived keys (through the process-wide [`super::cache`]), the repository config,
//! and passphrase changes.
//!
//! Creation is race-free: the key blob and the config are written create-if-absent, and
//! a process that loses either race reads back and uses the winner's.

use std::sync::Arc;

use bytes::Bytes;

use super::crypto::ObjectType;
use super::layout::{CONFIG_KEY, KEY_BLOB_KEY, store_key};
use super::secret::{DataKey, Passphrase, RepoKeys};
use super::{FORMAT_VERSION, KdfChoice, RepoConfig, RepoSettings, Repository, cache, keyfile};
use crate::error::{Error, Result};
use crate::ports::{BlobStore, PutOptions, StoreError};

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
        settings.check()?;
        if tenant.is_empty() {
            return Err(Error::invalid("empty tenant id"));
        }
        let key = store_key(KEY_BLOB_KEY)?;
        let keys = match store.get(&key).await {
            Ok(blob) => cache::unlock(&store, tenant, passphrase, blob).await?,
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
        repo.ensure_config(settings).await?;
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
        let blob = match store.get(&store_key(KEY_BLOB_KEY)?).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => {
                return Err(Error::NotInitialized {
                    store: store.describe(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let keys = cache::unlock(&store, tenant, passphrase, blob).await?;
        let repo = Self::from_parts(store, tenant, keys);
        repo.load_config().await?;
        Ok(repo)
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
    async fn load_config(&self) -> Result<Option<RepoConfig>> {
        let key = store_key(CONFIG_KEY)?;
        let bytes = match self.inner.store.get(&key).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let cfg: RepoConfig = self.open_json(ObjectType::Config, CONFIG_KEY, &bytes)?;
        if cfg.format_version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "repository format".into(),
                found: cfg.format_version,
                supported: FORMAT_VERSION,
            });
        }
        cfg.settings
            .check()
            .map_err(|_| Error::corrupt(CONFIG_KEY, "settings out of range"))?;
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cfg.clone());
        Ok(Some(cfg))
    }

    async fn ensure_config(&self, settings: RepoSettings) -> Result<()> {
        if self.load_config().await?.is_some() {
            return Ok(());
        }
        let cfg = RepoConfig {
            format_version: FORMAT_VERSION,
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
        self.inner
            .store
            .put(
                &store_key(KEY_BLOB_KEY)?,
                blob.clone(),
                PutOptions::OVERWRITE,
            )
            .await?;
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

/// Whether `store` holds a wrapped data key (any Atlas repository, either format).
pub async fn has_key_blob(store: &Arc<dyn BlobStore>) -> Result<bool> {
    Ok(store.head(&store_key(KEY_BLOB_KEY)?).await?.is_some())
}

/// Whether `store` holds a repository config (a current-format repository).
pub async fn has_config(store: &Arc<dyn BlobStore>) -> Result<bool> {
    Ok(store.head(&store_key(CONFIG_KEY)?).await?.is_some())
}
