//! One way in: find out what a store holds and open it.
//!
//! A store holds nothing yet, an Atlas repository of the current format, or a repository
//! written by TypeScript Atlas 1.x. [`open`] tells them apart ([`detect`]) and returns a
//! [`Repository`] for every one of them, so callers (the CLI, a library user) have one
//! call instead of probing formats themselves:
//!
//! - **Current format**: opened with the passphrase; created first when the caller asked
//!   for [`Access::Create`] and the store is empty.
//! - **TypeScript Atlas 1.x**: never written. It is read through a *cache repository*: the
//!   1.x bucket converted by [`migrate_v1`] into a store the caller provides
//!   ([`CacheStores`]) under a name computed here ([`v1_cache_name`]), with the same
//!   passphrase. The conversion is idempotent, so each open converts only the 1.x
//!   snapshots that are new since the last one. Asking for write access is refused with
//!   [`Error::V1ReadOnly`].
//!
//! The caller supplies where caches live (a directory in the CLI); the name, and so which
//! cache belongs to which bucket, is decided here, from the store's description (bucket,
//! prefix and endpoint, or directory — never credentials) and the tenant.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::compat::v1::{self, V1Repository};
use crate::error::{Error, Result};
use crate::ports::{BlobStore, Clock, Reporter};
use crate::repo::{KdfChoice, Passphrase, Repository};
use crate::service::migrate::{MigrateOptions, MigrateSummary, migrate_v1};

/// What a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// No repository (no wrapped key).
    Empty,
    /// An Atlas repository of the current format.
    Current,
    /// A TypeScript Atlas 1.x repository (read-only).
    V1,
}

/// What the caller will do with the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only read (list, read, export, verify, restore).
    Read,
    /// Change an existing repository (forget, delete, repair); an empty store is
    /// [`Error::NotInitialized`].
    Write,
    /// Write, creating the repository with this key derivation when the store is empty.
    Create(KdfChoice),
    /// Repair: write, and open even when the config cannot be read at all, so that the
    /// repair can write it anew.
    Repair,
}

impl Access {
    fn writes(self) -> bool {
        !matches!(self, Self::Read)
    }
}

/// Where cache repositories live (for TypeScript Atlas 1.x buckets, which are read through
/// a converted local copy). The CLI opens a directory per name under the user's data
/// directory.
pub trait CacheStores: Send + Sync + fmt::Debug {
    /// The store of the cache named `name` (a single path segment from
    /// [`v1_cache_name`]), created when missing.
    fn open(&self, name: &str) -> Result<Arc<dyn BlobStore>>;
}

/// How to open.
#[derive(Debug)]
pub struct OpenOptions<'a> {
    /// Read, write or create.
    pub access: Access,
    /// Where the cache of a 1.x repository lives; without it a 1.x repository is refused.
    pub v1_cache: Option<&'a dyn CacheStores>,
    /// Lease owner written while the 1.x conversion updates the cache.
    pub lease_owner: String,
    /// Time for the conversion's leases and records.
    pub clock: Arc<dyn Clock>,
    /// Progress and item failures of the conversion.
    pub reporter: &'a dyn Reporter,
}

/// An opened repository.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The repository to work on: the store's own, or the cache of a 1.x repository.
    pub repo: Repository,
    /// Set when the store holds a TypeScript Atlas 1.x repository.
    pub v1: Option<V1Source>,
}

/// The 1.x repository behind a cache.
#[derive(Debug, Clone)]
pub struct V1Source {
    /// The 1.x repository itself (for its own checks, e.g. `verify`).
    pub repo: V1Repository,
    /// Description of the cache store.
    pub cache: String,
    /// What bringing the cache up to date did.
    pub conversion: Conversion,
}

/// The outcome of bringing a 1.x cache up to date.
#[derive(Debug, Clone)]
pub enum Conversion {
    /// Converted what was new (possibly nothing).
    Converted(MigrateSummary),
    /// Another process is converting right now; the snapshots converted so far are used.
    Busy,
}

/// What `store` holds; reads key names and one small object at most.
pub async fn detect(store: &Arc<dyn BlobStore>) -> Result<Format> {
    if v1::detect(store).await? {
        return Ok(Format::V1);
    }
    if crate::repo::has_key_blob(store).await? {
        Ok(Format::Current)
    } else {
        Ok(Format::Empty)
    }
}

/// The name of the cache repository of a 1.x repository in `store` for `tenant`: the
/// tenant (made safe for a path segment) and the first 16 hex digits of SHA-256 of the
/// store's description, so two stores of one tenant never share a cache.
pub fn v1_cache_name(store: &dyn BlobStore, tenant: &str) -> String {
    let safe: String = tenant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let digest = Sha256::digest(store.describe().as_bytes());
    format!("{safe}-{}", hex::encode(&digest[..8]))
}

/// Detect what `store` holds and open it (see the module docs).
pub async fn open(
    store: Arc<dyn BlobStore>,
    tenant: &str,
    passphrase: &Passphrase,
    opts: &OpenOptions<'_>,
) -> Result<Opened> {
    match detect(&store).await? {
        Format::V1 => open_v1(store, tenant, passphrase, opts).await,
        Format::Current | Format::Empty => {
            let repo = match opts.access {
                Access::Create(kdf) => {
                    Repository::open_or_init(store, tenant, passphrase, kdf).await?
                }
                Access::Read => Repository::open(store, tenant, passphrase).await?,
                Access::Write => {
                    let description = store.describe();
                    let repo = Repository::open(store, tenant, passphrase).await?;
                    // A writer must not run on a repository whose config is gone while
                    // its data is there (a fresh config would give it a new identity):
                    // name the repair instead of "run init".
                    if repo.config().is_none() && repo.has_data().await? {
                        return Err(Error::NeedsRepair {
                            reason: format!(
                                "the repository config is missing from {description} although the repository holds data"
                            ),
                        });
                    }
                    repo
                }
                Access::Repair => Repository::open_for_repair(store, tenant, passphrase).await?,
            };
            Ok(Opened { repo, v1: None })
        }
    }
}

async fn open_v1(
    store: Arc<dyn BlobStore>,
    tenant: &str,
    passphrase: &Passphrase,
    opts: &OpenOptions<'_>,
) -> Result<Opened> {
    if opts.access.writes() {
        return Err(Error::V1ReadOnly {
            store: store.describe(),
        });
    }
    let Some(caches) = opts.v1_cache else {
        return Err(Error::invalid(format!(
            "{} is a TypeScript Atlas 1.x repository, which is read through a local cache, \
             and no cache location was given",
            store.describe()
        )));
    };
    let name = v1_cache_name(store.as_ref(), tenant);
    let source = V1Repository::open(store, tenant, passphrase).await?;
    let cache_store = caches.open(&name)?;
    let cache_desc = cache_store.describe();
    let cache =
        Repository::open_or_init(cache_store, tenant, passphrase, KdfChoice::default()).await?;
    let migrate = MigrateOptions {
        owner: opts.lease_owner.clone(),
        mailboxes: None,
    };
    let conversion = match migrate_v1(
        &source,
        &cache,
        Arc::clone(&opts.clock),
        opts.reporter,
        &migrate,
    )
    .await
    {
        Ok(summary) => Conversion::Converted(summary),
        Err(Error::LeaseHeld { .. }) => Conversion::Busy,
        Err(e) => return Err(e),
    };
    Ok(Opened {
        repo: cache,
        v1: Some(V1Source {
            repo: source,
            cache: cache_desc,
            conversion,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Named(&'static str);

    #[async_trait::async_trait]
    impl BlobStore for Named {
        async fn put(
            &self,
            k: &crate::ports::StoreKey,
            _: bytes::Bytes,
            _: crate::ports::PutOptions,
        ) -> Result<(), crate::ports::StoreError> {
            Err(crate::ports::StoreError::Unsupported {
                what: k.to_string(),
            })
        }
        async fn get(
            &self,
            k: &crate::ports::StoreKey,
        ) -> Result<bytes::Bytes, crate::ports::StoreError> {
            Err(crate::ports::StoreError::NotFound { key: k.to_string() })
        }
        async fn get_range(
            &self,
            k: &crate::ports::StoreKey,
            _: std::ops::Range<u64>,
        ) -> Result<bytes::Bytes, crate::ports::StoreError> {
            Err(crate::ports::StoreError::NotFound { key: k.to_string() })
        }
        async fn head(
            &self,
            _: &crate::ports::StoreKey,
        ) -> Result<Option<crate::ports::ObjectMeta>, crate::ports::StoreError> {
            Ok(None)
        }
        async fn list(
            &self,
            _: &str,
        ) -> Result<Vec<crate::ports::ObjectMeta>, crate::ports::StoreError> {
            Ok(vec![])
        }
        async fn delete(&self, _: &crate::ports::StoreKey) -> Result<(), crate::ports::StoreError> {
            Ok(())
        }
        fn describe(&self) -> String {
            self.0.into()
        }
    }

    #[test]
    fn cache_name_is_stable_safe_and_separates_stores_and_tenants() {
        // Pinned: the cache directory must not move between builds (a moved cache is
        // only converted again, but that costs a full conversion).
        assert_eq!(
            v1_cache_name(&Named("local directory /a"), "contoso.onmicrosoft.com"),
            "contoso.onmicrosoft.com-fd46966bc0478c95"
        );
        let a = v1_cache_name(&Named("local directory /a"), "t");
        assert_ne!(a, v1_cache_name(&Named("local directory /b"), "t"));
        assert_ne!(a, v1_cache_name(&Named("local directory /a"), "u"));
        let odd = v1_cache_name(&Named("x"), "../e\\vil/");
        assert!(odd.starts_with(".._e_vil_-"), "{odd}");
        assert!(!odd.contains('/') && !odd.contains('\\'));
    }
}
