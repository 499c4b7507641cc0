//! The store key layout (`docs/FORMAT.md` §1): every key name the repository writes is
//! spelled here and nowhere else. Services never see these names; they ask the
//! [`Repository`](super::Repository) for snapshots, packs and records.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::{Repository, SnapshotInfo, crypto};
use crate::error::{Error, Result};
use crate::model::{MailboxId, SnapshotId};
use crate::ports::StoreKey;

/// Store key of the wrapped data key (same as TypeScript Atlas, so a v1 bucket keeps its
/// passphrase).
pub const KEY_BLOB_KEY: &str = "_meta/dek.enc";
/// Store key of the encrypted repository config.
pub const CONFIG_KEY: &str = "config";

const SNAPSHOT_TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

pub(crate) fn store_key(key: &str) -> Result<StoreKey> {
    StoreKey::new(key).map_err(Error::Store)
}

pub(crate) fn snapshot_key(mailbox_name: &str, started: DateTime<Utc>, id: SnapshotId) -> String {
    format!(
        "snapshots/{mailbox_name}/{}_{id}",
        started.format(SNAPSHOT_TIME_FORMAT)
    )
}

/// `snapshots/<mailbox>/<time>_<uuid>` → (mailbox name, info).
pub(crate) fn parse_snapshot_key(key: &str) -> Option<(String, SnapshotInfo)> {
    let mut parts = key.strip_prefix("snapshots/")?.split('/');
    let (mb, name) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (time, id) = name.split_once('_')?;
    let started = NaiveDateTime::parse_from_str(time, SNAPSHOT_TIME_FORMAT)
        .ok()?
        .and_utc();
    Some((
        mb.to_owned(),
        SnapshotInfo {
            id: id.parse().ok()?,
            started,
        },
    ))
}

impl Repository {
    /// The keyed name of a mailbox in store keys (never the address itself).
    pub fn mailbox_key_name(&self, mailbox: &MailboxId) -> String {
        crypto::mailbox_name(&self.keys().name, mailbox.address())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn snapshot_key_round_trip_and_order() {
        let id = SnapshotId::random();
        let t = Utc.with_ymd_and_hms(2026, 11, 29, 10, 15, 0).unwrap()
            + chrono::Duration::milliseconds(123);
        let key = snapshot_key("abc", t, id);
        assert_eq!(key, format!("snapshots/abc/20261129T101500.123Z_{id}"));
        StoreKey::new(key.clone()).unwrap();
        let (mb, info) = parse_snapshot_key(&key).unwrap();
        assert_eq!((mb.as_str(), info.id, info.started), ("abc", id, t));
        let later = snapshot_key("abc", t + chrono::Duration::seconds(1), id);
        assert!(later > key);
        assert!(parse_snapshot_key("snapshots/abc/garbage").is_none());
    }
}
