//! Mailbox leases: at most one writer per mailbox.
//!
//! A lease is a sealed object `locks/<mailbox name>` created with create-if-absent, so of
//! two racing writers exactly one wins. It carries an owner string, a random token and an
//! expiry; the holder renews it by overwriting after checking the token. An expired lease
//! is never taken over silently: `break_lease` removes it explicitly.
//!
//! The same record, under `prune/lock`, is the repository-wide maintenance lock of
//! `prune` (see `prune.rs`): the functions below take the store key, the mailbox variants
//! are thin wrappers.
//!
//! Renewal is check-then-overwrite, not atomic: a lease broken between the check and the
//! overwrite would be resurrected. Breaking is only allowed after expiry, and holders renew
//! at half-life, so this needs a holder stalled past its whole lease *and* an operator
//! breaking it in that same instant.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::crypto::ObjectType;
use super::{Repository, store_key};
use crate::error::{Error, Result};
use crate::model::MailboxId;
use crate::ports::{Clock, PutOptions, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeaseRecord {
    pub(crate) owner: String,
    pub(crate) token: uuid::Uuid,
    pub(crate) acquired: DateTime<Utc>,
    pub(crate) expires: DateTime<Utc>,
}

/// A lease as reported to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Who holds it (free text chosen by the writer, e.g. `host:pid`).
    pub owner: String,
    /// When it was taken.
    pub acquired: DateTime<Utc>,
    /// When it expires unless renewed.
    pub expires: DateTime<Utc>,
}

impl From<&LeaseRecord> for LeaseInfo {
    fn from(r: &LeaseRecord) -> Self {
        Self {
            owner: r.owner.clone(),
            acquired: r.acquired,
            expires: r.expires,
        }
    }
}

pub(crate) fn lease_key(repo: &Repository, mailbox: &MailboxId) -> String {
    format!("locks/{}", repo.mailbox_key_name(mailbox))
}

fn ttl(repo: &Repository) -> Result<chrono::Duration> {
    let secs = repo.require_config()?.settings.lease_seconds;
    Ok(chrono::Duration::seconds(
        i64::try_from(secs).unwrap_or(i64::MAX / 1000),
    ))
}

pub(crate) async fn read_record(repo: &Repository, key: &str) -> Result<Option<LeaseRecord>> {
    match repo.store().get(&store_key(key)?).await {
        Ok(bytes) => repo.open_json(ObjectType::Lease, key, &bytes).map(Some),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn acquire(
    repo: &Repository,
    mailbox: &MailboxId,
    owner: &str,
    clock: &dyn Clock,
) -> Result<LeaseRecord> {
    acquire_key(repo, &lease_key(repo, mailbox), owner, clock).await
}

/// Create the lease object at `key`; `LeaseHeld`/`LeaseStale` when one is already there.
pub(crate) async fn acquire_key(
    repo: &Repository,
    key: &str,
    owner: &str,
    clock: &dyn Clock,
) -> Result<LeaseRecord> {
    let key = key.to_owned();
    let now = clock.now();
    let rec = LeaseRecord {
        owner: owner.to_owned(),
        token: uuid::Uuid::new_v4(),
        acquired: now,
        expires: now + ttl(repo)?,
    };
    let sealed = repo.seal_json(ObjectType::Lease, &key, &rec)?;
    match repo
        .store()
        .put(&store_key(&key)?, sealed, PutOptions::CREATE)
        .await
    {
        Ok(()) => Ok(rec),
        Err(StoreError::AlreadyExists { .. }) => match read_record(repo, &key).await? {
            Some(other) if other.expires > now => Err(Error::LeaseHeld {
                owner: other.owner,
                expires: other.expires,
            }),
            Some(other) => Err(Error::LeaseStale {
                owner: other.owner,
                expired: other.expires,
            }),
            // Released between our create and our read: the caller may simply retry.
            None => Err(Error::LeaseHeld {
                owner: "another writer (just released)".into(),
                expires: now,
            }),
        },
        Err(e) => Err(e.into()),
    }
}

/// Fail with `LeaseLost` unless the stored lease is still ours.
pub(crate) async fn check_held(
    repo: &Repository,
    mailbox: &MailboxId,
    held: &LeaseRecord,
) -> Result<()> {
    check_held_key(repo, &lease_key(repo, mailbox), held).await
}

pub(crate) async fn check_held_key(repo: &Repository, key: &str, held: &LeaseRecord) -> Result<()> {
    match read_record(repo, key).await? {
        Some(r) if r.token == held.token => Ok(()),
        Some(r) => Err(Error::LeaseLost { owner: r.owner }),
        None => Err(Error::LeaseLost {
            owner: "nobody".into(),
        }),
    }
}

pub(crate) async fn renew(
    repo: &Repository,
    mailbox: &MailboxId,
    held: &mut LeaseRecord,
    clock: &dyn Clock,
) -> Result<()> {
    renew_key(repo, &lease_key(repo, mailbox), held, clock).await
}

pub(crate) async fn renew_key(
    repo: &Repository,
    key: &str,
    held: &mut LeaseRecord,
    clock: &dyn Clock,
) -> Result<()> {
    check_held_key(repo, key, held).await?;
    let key = key.to_owned();
    let mut rec = held.clone();
    rec.expires = clock.now() + ttl(repo)?;
    let sealed = repo.seal_json(ObjectType::Lease, &key, &rec)?;
    repo.store()
        .put(&store_key(&key)?, sealed, PutOptions::OVERWRITE)
        .await?;
    *held = rec;
    Ok(())
}

pub(crate) async fn release(
    repo: &Repository,
    mailbox: &MailboxId,
    held: &LeaseRecord,
) -> Result<()> {
    release_key(repo, &lease_key(repo, mailbox), held).await
}

pub(crate) async fn release_key(repo: &Repository, key: &str, held: &LeaseRecord) -> Result<()> {
    check_held_key(repo, key, held).await?;
    repo.store().delete(&store_key(key)?).await?;
    Ok(())
}

pub(crate) async fn read(repo: &Repository, mailbox: &MailboxId) -> Result<Option<LeaseInfo>> {
    Ok(read_record(repo, &lease_key(repo, mailbox))
        .await?
        .as_ref()
        .map(LeaseInfo::from))
}

pub(crate) async fn break_stale(
    repo: &Repository,
    mailbox: &MailboxId,
    clock: &dyn Clock,
) -> Result<Option<LeaseInfo>> {
    break_stale_key(repo, &lease_key(repo, mailbox), clock).await
}

pub(crate) async fn break_stale_key(
    repo: &Repository,
    key: &str,
    clock: &dyn Clock,
) -> Result<Option<LeaseInfo>> {
    let info = match read_record(repo, key).await {
        Ok(None) => return Ok(None),
        Ok(Some(r)) => {
            if r.expires > clock.now() {
                return Err(Error::LeaseHeld {
                    owner: r.owner,
                    expires: r.expires,
                });
            }
            Some(LeaseInfo::from(&r))
        }
        // An unreadable lease protects nothing; breaking it is the way out.
        Err(e) if e.is_integrity_failure() => None,
        Err(e) => return Err(e),
    };
    repo.store().delete(&store_key(key)?).await?;
    Ok(info)
}
