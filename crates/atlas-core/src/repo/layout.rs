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
/// Store key of the spare copy of the wrapped data key (byte for byte the same).
pub const KEY_SPARE_KEY: &str = "_meta/dek.spare";
/// Store key of the spare copy of the config (sealed under this name).
pub const CONFIG_SPARE_KEY: &str = "_meta/config.spare";
/// Store key of the plain-JSON replica marker (`docs/FORMAT.md` §5.7).
pub const REPLICA_MARKER_KEY: &str = "_meta/replica";
/// Prefix of the replication status records (`replication/<target id>/<snapshot>`).
pub const REPLICATION_STATUS_PREFIX: &str = "replication/";
/// Prefix of packs (`packs/<hh>/<32 hex>`).
pub(crate) const PACK_PREFIX: &str = "packs/";
/// Prefix of index files (`index/<32 hex>`).
pub(crate) const INDEX_PREFIX: &str = "index/";
/// Prefix of mailbox records (`mailboxes/<mailbox name>`).
pub(crate) const MAILBOX_PREFIX: &str = "mailboxes/";
/// Prefix of snapshot records (`snapshots/<mailbox name>/<time>_<uuid>`).
pub(crate) const SNAPSHOT_PREFIX: &str = "snapshots/";
/// Prefix of mailbox leases (`locks/<mailbox name>`) and tenant-run leases.
pub(crate) const LOCK_PREFIX: &str = "locks/";
/// Prefix of tenant-run leases (`locks/run-<32 hex>`), inside [`LOCK_PREFIX`] so that
/// everything that waits for mailbox leases (prune) waits for them too.
pub(crate) const RUN_LOCK_PREFIX: &str = "locks/run-";

/// `mailboxes/<mailbox name>`.
pub(crate) fn mailbox_record_key(mailbox_name: &str) -> String {
    format!("{MAILBOX_PREFIX}{mailbox_name}")
}

const SNAPSHOT_TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

pub(crate) fn store_key(key: &str) -> Result<StoreKey> {
    StoreKey::new(key).map_err(Error::Store)
}

pub(crate) fn snapshot_key(mailbox_name: &str, started: DateTime<Utc>, id: SnapshotId) -> String {
    format!(
        "{SNAPSHOT_PREFIX}{mailbox_name}/{}_{id}",
        started.format(SNAPSHOT_TIME_FORMAT)
    )
}

/// `snapshots/<mailbox>/<time>_<uuid>` → (mailbox name, info).
pub(crate) fn parse_snapshot_key(key: &str) -> Option<(String, SnapshotInfo)> {
    let mut parts = key.strip_prefix(SNAPSHOT_PREFIX)?.split('/');
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

    /// The store key of a mailbox's record, for naming it in damage reports.
    pub fn mailbox_record_name(&self, mailbox: &MailboxId) -> String {
        mailbox_record_key(&self.mailbox_key_name(mailbox))
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

    /// The key layout is private to `repo`: no service reaches for the raw store or
    /// spells a key prefix (issue 12 §3). Checked on the source, so a new service that
    /// does either fails here rather than in review.
    #[test]
    fn services_never_touch_the_store_or_spell_key_names() {
        let dirs = [
            "src/service",
            "src/service/restore",
            "src/compat",
            "src/compat/v1",
        ];
        let banned = [
            ".store()",
            "get_required(",
            "\"packs/",
            "\"index/",
            "\"snapshots/",
            "\"mailboxes/",
            "\"locks/",
            "\"prune/",
            "\"replication/",
            "\"config\"",
            "\"_meta/",
        ];
        let mut checked = 0;
        for dir in dirs {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or_default();
                    for b in banned {
                        assert!(
                            !code.contains(b),
                            "{}:{}: `{b}` outside repo: {line}",
                            path.display(),
                            n + 1
                        );
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 10, "only {checked} files checked");
    }
}
