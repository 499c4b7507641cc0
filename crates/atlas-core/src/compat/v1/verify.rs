//! v1-native verify: checks the objects of the old bucket themselves (not a migrated copy).
//!
//! Every manifest of every mailbox must decrypt and parse; every message and attachment
//! object a manifest names must exist, decrypt, and hash to its key and its manifest
//! checksum. Objects shared by several snapshots are read once, but a damaged one is
//! reported for every snapshot and message that refers to it, so the report answers
//! "which snapshots are affected". Subjects and file names never appear in problems.

use std::collections::{HashMap, HashSet};

use super::{V1Repository, V1SnapshotList, is_object_damage};
use crate::error::{Error, Result};
use crate::ports::{Event, Reporter, Task};

/// What is wrong with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1ProblemKind {
    /// The object is not in the store.
    Missing,
    /// Decryption failed (altered bytes, wrong key) or the object is truncated.
    Damaged,
    /// Decrypted, but the plaintext's SHA-256 is not the one in its key / manifest.
    ChecksumMismatch,
    /// Decrypted and hashed correctly, but the JSON does not parse, or the key is malformed.
    Unparsable,
    /// v1 recorded the attachment but never stored its content (no `contentBytes`).
    NotStored,
}

/// One damaged item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Problem {
    /// Mailbox segment.
    pub mailbox: String,
    /// Snapshot id, when the problem is about a snapshot's manifest or entries.
    pub snapshot_id: Option<String>,
    /// Store key of the object.
    pub key: String,
    /// Graph message id, when the object belongs to a message.
    pub message_id: Option<String>,
    /// Graph attachment id, when the object is an attachment.
    pub attachment_id: Option<String>,
    /// Kind.
    pub kind: V1ProblemKind,
    /// Explanation (from the error; never a subject, name or body).
    pub reason: String,
}

impl V1Problem {
    pub(crate) fn from_error(
        mailbox: &str,
        snapshot_id: Option<&str>,
        key: &str,
        message_id: Option<&str>,
        attachment_id: Option<&str>,
        e: &Error,
    ) -> Self {
        let kind = match e {
            Error::Missing { .. } => V1ProblemKind::Missing,
            Error::AuthenticationFailed { .. } | Error::Truncated { .. } => V1ProblemKind::Damaged,
            Error::ChecksumMismatch { .. } => V1ProblemKind::ChecksumMismatch,
            _ => V1ProblemKind::Unparsable,
        };
        Self {
            mailbox: mailbox.to_owned(),
            snapshot_id: snapshot_id.map(str::to_owned),
            key: key.to_owned(),
            message_id: message_id.map(str::to_owned),
            attachment_id: attachment_id.map(str::to_owned),
            kind,
            reason: e.to_string(),
        }
    }
}

impl std::fmt::Display for V1Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.mailbox)?;
        if let Some(s) = &self.snapshot_id {
            write!(f, " snapshot {s}")?;
        }
        if let Some(m) = &self.message_id {
            write!(f, " message {m}")?;
        }
        if let Some(a) = &self.attachment_id {
            write!(f, " attachment {a}")?;
        }
        write!(f, ": {:?} {}: {}", self.kind, self.key, self.reason)
    }
}

/// Result of a v1 verify.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1VerifyReport {
    /// Mailboxes checked.
    pub mailboxes: usize,
    /// Manifests checked.
    pub manifests: usize,
    /// Distinct message objects read.
    pub messages: usize,
    /// Distinct attachment objects read.
    pub attachments: usize,
    /// Every damaged item, by mailbox, snapshot, key.
    pub problems: Vec<V1Problem>,
}

impl V1VerifyReport {
    /// Whether nothing was found damaged.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(super) async fn verify(
    repo: &V1Repository,
    only: Option<&str>,
    reporter: &dyn Reporter,
) -> Result<V1VerifyReport> {
    let mut report = V1VerifyReport::default();
    let mailboxes: Vec<String> = repo
        .list_mailboxes()
        .await?
        .into_iter()
        .filter(|m| only.is_none_or(|o| o == m))
        .collect();
    for mailbox in &mailboxes {
        report.mailboxes += 1;
        let list = repo.list_snapshots(mailbox).await?;
        report.manifests += list.snapshots.len() + list.damaged.len();
        report.problems.extend(list.damaged.iter().cloned());
        // One task per mailbox: its manifests are in memory now, so the total is known
        // without reading every manifest of the repository first.
        let objects: HashSet<&str> = list
            .snapshots
            .iter()
            .flat_map(|s| &s.manifest.entries)
            .flat_map(|e| {
                std::iter::once(e.storage_key.as_str())
                    .chain(e.attachments.iter().map(|a| a.storage_key.as_str()))
            })
            .filter(|k| !k.is_empty())
            .collect();
        reporter.report(Event::TaskStarted {
            task: Task::VerifyV1,
            total: Some(objects.len() as u64),
            bytes: None,
        });
        let checked = check_mailbox(repo, mailbox, &list, reporter, &mut report).await;
        reporter.report(Event::TaskDone {
            task: Task::VerifyV1,
        });
        checked?;
    }
    Ok(report)
}

/// Read every object the manifests of one mailbox name, once each.
async fn check_mailbox(
    repo: &V1Repository,
    mailbox: &str,
    list: &V1SnapshotList,
    reporter: &dyn Reporter,
    report: &mut V1VerifyReport,
) -> Result<()> {
    let read_one = || {
        reporter.report(Event::TaskProgress {
            task: Task::VerifyV1,
            done: 1,
            bytes: 0,
        });
    };
    {
        // Outcome per object key (None = fine), so shared objects are read once.
        let mut seen: HashMap<String, Option<Error>> = HashMap::new();
        for snap in &list.snapshots {
            let sid = Some(snap.snapshot_id.as_str());
            for entry in &snap.manifest.entries {
                let mid = Some(entry.object_id.as_str());
                if !seen.contains_key(&entry.storage_key) {
                    report.messages += 1;
                    let outcome = match repo.read_message(mailbox, entry).await {
                        Ok(_) => None,
                        Err(e) if is_object_damage(&e) => Some(e),
                        Err(e) => return Err(e),
                    };
                    seen.insert(entry.storage_key.clone(), outcome);
                    read_one();
                }
                if let Some(Some(e)) = seen.get(&entry.storage_key) {
                    report.problems.push(V1Problem::from_error(
                        mailbox,
                        sid,
                        &entry.storage_key,
                        mid,
                        None,
                        e,
                    ));
                }
                for att in &entry.attachments {
                    let aid = Some(att.attachment_id.as_str());
                    if att.storage_key.is_empty() {
                        report.problems.push(V1Problem {
                            mailbox: mailbox.to_owned(),
                            snapshot_id: sid.map(str::to_owned),
                            key: String::new(),
                            message_id: mid.map(str::to_owned),
                            attachment_id: aid.map(str::to_owned),
                            kind: V1ProblemKind::NotStored,
                            reason:
                                "atlas v1 recorded this attachment but never stored its content"
                                    .into(),
                        });
                        continue;
                    }
                    if !seen.contains_key(&att.storage_key) {
                        report.attachments += 1;
                        let outcome = match repo.read_attachment(mailbox, att).await {
                            Ok(_) => None,
                            Err(e) if is_object_damage(&e) => Some(e),
                            Err(e) => return Err(e),
                        };
                        seen.insert(att.storage_key.clone(), outcome);
                        read_one();
                    }
                    if let Some(Some(e)) = seen.get(&att.storage_key) {
                        report.problems.push(V1Problem::from_error(
                            mailbox,
                            sid,
                            &att.storage_key,
                            mid,
                            aid,
                            e,
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}
