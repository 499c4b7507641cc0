//! Sharding: split the mailboxes of one tenant-wide backup over N independent workers
//! (`atlas backup --shard I/N`, e.g. the pods of a Kubernetes Indexed Job) with no
//! coordinator. Every worker computes the same partition on its own, so together the N
//! workers cover every selected mailbox exactly once.
//!
//! The partition is a pure function of the mailbox's **directory object id** (a GUID that
//! survives renames and address changes) and N: shard = SHA-256(lower-cased id) as a
//! big-endian integer of its first 8 bytes, modulo N. SHA-256 rather than Rust's `Hash`:
//! its value is fixed by a standard, so every build, version and platform agrees — a
//! worker running a newer Atlas than its neighbours still takes the same mailboxes.
//! A plain modulo rather than a consistent hash: when N changes many mailboxes move to
//! another worker, which costs nothing, because every mailbox's state (delta positions,
//! snapshots) lives in the shared repository, not with the worker.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::model::MailboxId;

/// One worker's share: shard `index` of `count` (0-based, `index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` of `count`; `None` unless `count >= 1` and `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Self> {
        (count >= 1 && index < count).then_some(Self { index, count })
    }

    /// This worker's index, 0-based.
    pub fn index(self) -> u32 {
        self.index
    }

    /// The number of workers.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Which shard a mailbox belongs to, from its directory object id.
    pub fn of(mailbox_object_id: &str, count: u32) -> u32 {
        let digest = Sha256::digest(mailbox_object_id.trim().to_lowercase().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let bucket = u64::from_be_bytes(first) % u64::from(count.max(1));
        u32::try_from(bucket).expect("invariant: a value modulo a u32 fits in a u32")
    }

    /// Whether this worker backs up the mailbox with this directory object id.
    pub fn owns(self, mailbox_object_id: &str) -> bool {
        Self::of(mailbox_object_id, self.count) == self.index
    }

    /// Whether this worker backs up the mailbox (by [`shard_key`]).
    pub fn owns_mailbox(self, mailbox: &MailboxId) -> bool {
        self.owns(shard_key(mailbox))
    }

    /// The items of `all` this worker owns, in their order; `id` gives an item's
    /// directory object id.
    pub fn select<T>(self, all: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<T> {
        all.into_iter().filter(|m| self.owns(id(m))).collect()
    }
}

/// What a mailbox is partitioned by: its directory object id, which every worker gets
/// from the same directory listing and which survives renames; the address only for a
/// mailbox whose source gave no object id (then every worker still agrees, as they all
/// see the same address).
pub fn shard_key(mailbox: &MailboxId) -> &str {
    mailbox.graph_user_id().unwrap_or_else(|| mailbox.address())
}

/// `I/N`, 0-based (`0/3`, `1/3`, `2/3`), as `--shard` takes it. A malformed one is
/// [`Error::InvalidInput`] (a usage error).
impl FromStr for Shard {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| Error::InvalidInput {
            reason: format!("invalid shard {text:?}: {reason}"),
        };
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| err("expected I/N, e.g. 0/3"))?;
        let index: u32 = index
            .trim()
            .parse()
            .map_err(|_| err("I is not a whole number"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| err("N is not a whole number"))?;
        if count == 0 {
            return Err(err("N must be at least 1"));
        }
        Self::new(index, count).ok_or_else(|| err("I must be less than N (I counts from 0)"))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    /// Pinned values: the partition must never change between versions, or workers of
    /// different versions would skip or double mailboxes. Computed independently with
    /// `python3 -c 'import hashlib; print(int.from_bytes(hashlib.sha256(ID.encode()).digest()[:8], "big") % N)'`.
    #[test]
    fn the_partition_is_pinned() {
        let table = [
            ("6e0b1c43-8f1c-4d67-a1e0-4c5d3b8a1f01", 3, 2),
            ("6e0b1c43-8f1c-4d67-a1e0-4c5d3b8a1f02", 3, 1),
            ("6e0b1c43-8f1c-4d67-a1e0-4c5d3b8a1f03", 3, 2),
            ("6e0b1c43-8f1c-4d67-a1e0-4c5d3b8a1f04", 5, 0),
            ("6e0b1c43-8f1c-4d67-a1e0-4c5d3b8a1f05", 5, 1),
            ("0f9d2c1e-1111-2222-3333-444455556666", 4, 3),
            ("0f9d2c1e-1111-2222-3333-444455556666", 1, 0),
        ];
        for (id, n, shard) in table {
            assert_eq!(Shard::of(id, n), shard, "{id} of {n}");
        }
    }

    #[test]
    fn the_id_is_compared_case_and_space_insensitively() {
        let id = "6E0B1C43-8F1C-4D67-A1E0-4C5D3B8A1F01 ";
        assert_eq!(
            Shard::of(id, 7),
            Shard::of("6e0b1c43-8f1c-4d67-a1e0-4c5d3b8a1f01", 7)
        );
    }

    #[test]
    fn n_workers_cover_every_mailbox_exactly_once_and_evenly() {
        let ids: Vec<String> = (0..3000)
            .map(|i| format!("{i:08x}-0000-4000-8000-{:012x}", i * 7919))
            .collect();
        for n in [1, 2, 3, 4, 7, 16] {
            let mut owners = vec![0u32; ids.len()];
            let mut sizes = vec![0usize; n as usize];
            for i in 0..n {
                let shard = Shard::new(i, n).expect("valid");
                for (k, id) in ids.iter().enumerate() {
                    if shard.owns(id) {
                        owners[k] += 1;
                        sizes[i as usize] += 1;
                    }
                }
            }
            assert!(owners.iter().all(|&o| o == 1), "n = {n}");
            let mean = ids.len() / n as usize;
            for size in sizes {
                // A hash spreads evenly: within 20% of the mean for 3000 ids.
                assert!(size.abs_diff(mean) * 5 <= mean, "n = {n}: {size} vs {mean}");
            }
        }
    }

    #[test]
    fn select_keeps_the_owned_items_in_order() {
        let ids: Vec<String> = (0..50).map(|i| format!("id-{i}")).collect();
        let shard = Shard::new(1, 3).expect("valid");
        let picked = shard.select(ids.clone(), String::as_str);
        let expected: Vec<String> = ids.into_iter().filter(|i| shard.owns(i)).collect();
        assert_eq!(picked, expected);
        assert!(!picked.is_empty());
    }

    #[test]
    fn parsing_takes_i_of_n_and_refuses_the_rest() {
        assert_eq!(
            "0/3".parse::<Shard>().expect("valid"),
            Shard::new(0, 3).expect("valid")
        );
        assert_eq!(
            " 2 / 3 ".parse::<Shard>().expect("valid").to_string(),
            "2/3"
        );
        for bad in ["3/3", "1/0", "a/3", "1", "-1/3", "1/3/4", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let err = "3/3".parse::<Shard>().expect_err("refused");
        assert!(err.to_string().contains("less than N"), "{err}");
    }
}
