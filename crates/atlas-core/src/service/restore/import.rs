//! Restore of calendars, contacts, tasks and notes: each item imported from its stored
//! full-fidelity export stream (never parsed) through the [`ItemImport`] port.
//!
//! Each kind gets its own restore root under the target's folder of that kind (a
//! `Restore-<time>` calendar under the calendar, a contact folder under the contacts …),
//! and the snapshot's folder hierarchy below it, so nothing that exists in the target is
//! touched. An import cannot carry a restore mark, so the [`RestoreLedger`] keeps what was
//! imported (see `ports::import` for the protocol): imports run one at a time per folder,
//! each preceded by a `Started` and followed by an `Imported` record; a rerun skips what is
//! recorded and present, attributes an item it does not know to the one unfinished import
//! of that folder, and refuses to import into a folder holding items it cannot attribute.

use std::collections::{HashMap, HashSet};

use tracing::Instrument as _;

use super::{CREATE_ATTEMPTS, Importer, Next, PlannedFolder, RestoreError, Run, check_sha, joined};
use crate::model::{ContentKind, ContentRef, FolderId, ItemId, ItemKind, MailboxId};
use crate::ports::{ItemImport, LedgerRecord, TargetError};
use crate::repo::Repository;

/// Why one stored stream could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportStreamError {
    /// The stream could not be read from the repository, or its checksum is wrong.
    #[error("stored export stream unreadable: {0}")]
    Repository(String),
    /// The target refused or failed.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Import one stored export stream into `folder` of `mailbox`: read from the repository,
/// checked against its SHA-256, sent as stored. The step every import-based restore is
/// made of (any kind's stream, mail's full-fidelity stream too); idempotence is the
/// caller's business (see the restore ledger).
pub async fn import_stream(
    repo: &Repository,
    target: &dyn ItemImport,
    mailbox: &MailboxId,
    folder: &FolderId,
    content: &ContentRef,
) -> Result<ItemId, ImportStreamError> {
    let stream = read_stream(repo, content).await?;
    Ok(target.import_item(mailbox, folder, &stream).await?)
}

async fn read_stream(
    repo: &Repository,
    content: &ContentRef,
) -> Result<bytes::Bytes, ImportStreamError> {
    let raw = repo
        .read_blob(&content.id)
        .await
        .map_err(|e| ImportStreamError::Repository(e.to_string()))?;
    if !check_sha(&raw, &content.sha256) {
        return Err(ImportStreamError::Repository(
            "checksum mismatch (run atlas verify --read-data)".into(),
        ));
    }
    Ok(raw)
}

/// What the ledger says about one target folder.
#[derive(Debug, Default)]
struct FolderLedger {
    /// Source item → the item its import created.
    done: HashMap<ItemId, ItemId>,
    /// Imports started and never recorded as finished or refused.
    pending: Vec<ItemId>,
    /// Whether the ledger has any record of this folder.
    known: bool,
}

impl FolderLedger {
    fn of(records: &[LedgerRecord], folder: &FolderId) -> Self {
        let mut s = Self::default();
        for r in records {
            match r {
                LedgerRecord::Started { folder: f, source } if f == folder => {
                    s.known = true;
                    if !s.done.contains_key(source) && !s.pending.contains(source) {
                        s.pending.push(source.clone());
                    }
                }
                LedgerRecord::Imported {
                    folder: f,
                    source,
                    target,
                } if f == folder => {
                    s.known = true;
                    s.pending.retain(|p| p != source);
                    s.done.insert(source.clone(), target.clone());
                }
                LedgerRecord::Refused { folder: f, source } if f == folder => {
                    s.known = true;
                    s.pending.retain(|p| p != source);
                }
                _ => {}
            }
        }
        s
    }

    fn targets(&self) -> HashSet<ItemId> {
        self.done.values().cloned().collect()
    }
}

/// The Graph-side folder class names are the adapter's business; the core only asks for a
/// folder of a kind.
fn root_key(kind: ItemKind) -> (ItemKind, Vec<String>) {
    (kind, Vec::new())
}

/// Between the steps of a source path in the name of a folder that cannot nest (To Do
/// lists): `Restore-<time> > Tasks > Project Launch`. Not `/`, which Outlook shows as part
/// of a name and path readers split on.
pub const FLAT_SEPARATOR: &str = " > ";

/// Target folders created (or found) so far through the import port, by kind and path
/// below the restore root.
#[derive(Default)]
pub(super) struct Folders {
    cache: HashMap<(ItemKind, Vec<String>), FolderId>,
}

impl Folders {
    async fn resolve(
        &mut self,
        target: &dyn ItemImport,
        mailbox: &MailboxId,
        root: &str,
        pf: &PlannedFolder,
    ) -> Result<FolderId, TargetError> {
        let kind = pf.kind;
        if !target.nests_folders(kind) {
            // One folder per source folder, beside the others, named by its whole path.
            let key = (
                kind,
                pf.target_path.iter().map(|s| s.name.clone()).collect(),
            );
            if let Some(id) = self.cache.get(&key) {
                return Ok(id.clone());
            }
            let home = target.kind_home(mailbox, kind).await?;
            let name = std::iter::once(root)
                .chain(pf.target_path.iter().map(|s| s.name.as_str()))
                .collect::<Vec<_>>()
                .join(FLAT_SEPARATOR);
            let id = target
                .ensure_item_folder(mailbox, home.as_ref().map(|h| &h.id), &name, kind)
                .await?
                .id;
            self.cache.insert(key, id.clone());
            return Ok(id);
        }
        let mut parent = if let Some(id) = self.cache.get(&root_key(kind)) {
            id.clone()
        } else {
            let home = target.kind_home(mailbox, kind).await?;
            let id = target
                .ensure_item_folder(mailbox, home.as_ref().map(|h| &h.id), root, kind)
                .await?
                .id;
            self.cache.insert(root_key(kind), id.clone());
            id
        };
        let mut path = Vec::new();
        for step in &pf.target_path {
            path.push(step.name.clone());
            let key = (kind, path.clone());
            parent = if let Some(id) = self.cache.get(&key) {
                id.clone()
            } else {
                let id = target
                    .ensure_item_folder(mailbox, Some(&parent), &step.name, kind)
                    .await?
                    .id;
                self.cache.insert(key, id.clone());
                id
            };
        }
        Ok(parent)
    }
}

/// How one import ended.
enum Imported {
    Created,
    Failed(String),
}

impl Run<'_> {
    /// Import every folder of kinds other than mail; stops early on cancel.
    pub(super) async fn import_folders(
        &mut self,
        importer: &Importer,
        folders: &[&PlannedFolder],
    ) -> Result<(), RestoreError> {
        let Some(root) = self.plan.root.clone() else {
            // plan() refuses in-place restores of these kinds.
            return Ok(());
        };
        let mut records = importer.ledger.load().await?;
        let mut resolved = Folders::default();
        for pf in folders {
            let span = tracing::info_span!("folder", folder = %pf.source_path);
            let next = self
                .import_folder(importer, &mut records, &mut resolved, &root, pf)
                .instrument(span)
                .await?;
            if matches!(next, Next::Stop) {
                break;
            }
        }
        Ok(())
    }

    async fn append(
        importer: &Importer,
        records: &mut Vec<LedgerRecord>,
        record: LedgerRecord,
    ) -> Result<(), RestoreError> {
        importer.ledger.append(&record).await?;
        records.push(record);
        Ok(())
    }

    /// Import one folder's items, then verify it: the same folder steps as mail's
    /// `Run::folder`, with the ledger in place of the restore marks.
    async fn import_folder(
        &mut self,
        importer: &Importer,
        records: &mut Vec<LedgerRecord>,
        resolved: &mut Folders,
        root: &str,
        pf: &PlannedFolder,
    ) -> Result<Next, RestoreError> {
        let target = importer.target.clone();
        let mailbox = self.ctx.mailbox.clone();
        let target_path = format!("{}: {}", pf.kind, joined(Some(root), &pf.target_path));
        let Some(result) = self.open_folder(pf, &target_path) else {
            return Ok(Next::Stop);
        };
        let folder = match resolved.resolve(target.as_ref(), &mailbox, root, pf).await {
            Ok(id) => id,
            Err(e) => {
                return self.leave_folder(pf, result, "target folder could not be created", e);
            }
        };
        self.import_into(importer, records, pf, &target_path, result, &folder)
            .await
    }

    /// Restore a mail folder whose messages all have their full-fidelity export stream
    /// stored (`--fidelity full`): each message is imported from its stream with the
    /// ledger, as other kinds are — an exact copy, not a reconstruction from MIME. The
    /// folder is found or created like any mail folder (under the restore root, same path,
    /// with `Mail.ReadWrite`), then looked up through the import port, because the import's
    /// `FolderId` is the id the mailbox API's folder listing returns ("Use the **id**
    /// property returned by List folders as the folder identifier for mailbox import and
    /// export operations", resources/mailbox-import-export-api-overview.md), not the mail
    /// folder id.
    pub(super) async fn import_mail_folder(
        &mut self,
        importer: &Importer,
        records: &mut Vec<LedgerRecord>,
        resolver: &mut super::FolderResolver<'_>,
        import_folders: &mut Folders,
        pf: &PlannedFolder,
    ) -> Result<Next, RestoreError> {
        let Some(root) = self.plan.root.clone() else {
            // imports_mail() is false in place.
            return Ok(Next::Continue);
        };
        let target_path = joined(Some(&root), &pf.target_path);
        let Some(result) = self.open_folder(pf, &target_path) else {
            return Ok(Next::Stop);
        };
        let mailbox = self.ctx.mailbox.clone();
        let found = match resolver.resolve(&pf.target_path).await {
            // The folder exists now: the import port finds it (it lists before it creates).
            Ok(_) => {
                import_folders
                    .resolve(importer.target.as_ref(), &mailbox, &root, pf)
                    .await
            }
            Err(e) => Err(e),
        };
        let folder = match found {
            Ok(id) => id,
            Err(e) => {
                return self.leave_folder(pf, result, "target folder could not be created", e);
            }
        };
        self.import_into(importer, records, pf, &target_path, result, &folder)
            .await
    }

    /// Import a folder's items into `folder` with the ledger, then verify it.
    async fn import_into(
        &mut self,
        importer: &Importer,
        records: &mut Vec<LedgerRecord>,
        pf: &PlannedFolder,
        target_path: &str,
        mut result: super::FolderResult,
        folder: &FolderId,
    ) -> Result<Next, RestoreError> {
        let target = importer.target.clone();
        let mailbox = self.ctx.mailbox.clone();
        let folder = folder.clone();
        let target_path = target_path.to_owned();
        // Without the listing nothing can be checked for duplicates: leave the folder.
        let listing: HashSet<ItemId> = match target.list_folder_items(&mailbox, &folder).await {
            Ok(l) => l.into_iter().collect(),
            Err(e) => return self.leave_folder(pf, result, "target folder could not be listed", e),
        };

        let (mut state, blocked) = self
            .reconcile(importer, records, &folder, &listing, pf)
            .await?;
        let mut failures: HashMap<ItemId, String> = HashMap::new();
        for meta in &pf.items {
            if self.cancel.is_requested() {
                self.summary.cancelled = true;
                break;
            }
            if state.done.contains_key(&meta.id) {
                self.summary.skipped += 1;
                self.done_item(&target_path, 0);
                continue;
            }
            let outcome = if let Some(reason) = blocked.get(&meta.id) {
                Imported::Failed(reason.clone())
            } else {
                self.import_one(importer, records, &mut state, &folder, meta)
                    .await?
            };
            match outcome {
                Imported::Created => {
                    self.summary.created += 1;
                    self.done_item(&target_path, meta.mime_size);
                }
                Imported::Failed(reason) => {
                    self.failed_item(&mut failures, meta.id.clone(), reason, &target_path);
                }
            }
        }

        // Verify: every selected item recorded as imported and present in the folder.
        let after = target
            .list_folder_items(&mailbox, &folder)
            .await
            .map(|l| l.into_iter().collect::<HashSet<ItemId>>());
        self.check_folder(
            pf,
            &failures,
            &mut result,
            after,
            |after, meta| state.done.get(&meta.id).is_some_and(|t| after.contains(t)),
            "not found in the target folder",
        )?;
        Ok(self.close_folder(pf, result))
    }

    /// Reconcile the ledger with what the target folder holds (`listing`): what it
    /// records as imported and is there is done; an item it does not know is attributed to
    /// the folder's one unfinished import. The second value holds the items that must not
    /// be imported (and why): all of them when the folder holds items the ledger has never
    /// seen, the unfinished imports when what they created cannot be told apart.
    async fn reconcile(
        &self,
        importer: &Importer,
        records: &mut Vec<LedgerRecord>,
        folder: &FolderId,
        listing: &HashSet<ItemId>,
        pf: &PlannedFolder,
    ) -> Result<(FolderLedger, HashMap<ItemId, String>), RestoreError> {
        let mut state = FolderLedger::of(records, folder);
        state.done.retain(|_, t| listing.contains(t));
        let known = state.targets();
        let unknown: Vec<ItemId> = listing
            .iter()
            .filter(|i| !known.contains(*i))
            .cloned()
            .collect();
        let mut blocked: HashMap<ItemId, String> = HashMap::new();
        if !unknown.is_empty() {
            if !state.known {
                let reason = format!(
                    "the target folder already holds {} item(s) this restore's ledger does not \
                     know (a run on another machine, or items put there by hand); nothing is \
                     imported into it so nothing is duplicated — restore under another --root",
                    unknown.len()
                );
                for m in &pf.items {
                    blocked.insert(m.id.clone(), reason.clone());
                }
            } else if let ([source], [created]) = (state.pending.as_slice(), unknown.as_slice()) {
                // The one unfinished import of this folder did create its item; finished
                // (a contact's photo) before it counts as done.
                let (source, created) = (source.clone(), created.clone());
                if let Some(meta) = pf.items.iter().find(|m| m.id == source)
                    && let Err(reason) = self.finish(importer, folder, &created, meta).await?
                {
                    blocked.insert(source, reason);
                    return Ok((state, blocked));
                }
                Self::append(
                    importer,
                    records,
                    LedgerRecord::Imported {
                        folder: folder.clone(),
                        source: source.clone(),
                        target: created.clone(),
                    },
                )
                .await?;
                state.pending.clear();
                state.done.insert(source, created);
            } else {
                let reason = format!(
                    "an earlier import of this item ended without an answer and the folder \
                     holds {} item(s) that cannot be told apart; not imported again so nothing \
                     is duplicated",
                    unknown.len()
                );
                for p in &state.pending {
                    blocked.insert(p.clone(), reason.clone());
                }
            }
        }
        Ok((state, blocked))
    }

    /// Finish `created` (see [`ItemImport::finish_item`]) from `meta`'s stored content:
    /// `Ok(Err(reason))` when it could not be, so the item stays unfinished.
    async fn finish(
        &self,
        importer: &Importer,
        folder: &FolderId,
        created: &ItemId,
        meta: &crate::model::ItemMeta,
    ) -> Result<Result<(), String>, RestoreError> {
        let Some(content) = meta.content_of(importer.target.reads()) else {
            return Ok(Ok(()));
        };
        let content = match read_stream(&self.ctx.repo, &content).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e.to_string())),
        };
        match importer
            .target
            .finish_item(&self.ctx.mailbox, folder, created, &content)
            .await
        {
            Ok(()) => Ok(Ok(())),
            Err(e) if e.is_fatal() => Err(e.into()),
            Err(e) => Ok(Err(format!(
                "created by an earlier run but not finished ({e}); the next run tries again"
            ))),
        }
    }

    /// Import one item: `Started` in the ledger, the import, `Imported` with the new id.
    /// A lost answer is checked by listing the folder before the stream is sent again.
    async fn import_one(
        &self,
        importer: &Importer,
        records: &mut Vec<LedgerRecord>,
        state: &mut FolderLedger,
        folder: &FolderId,
        meta: &crate::model::ItemMeta,
    ) -> Result<Imported, RestoreError> {
        let wanted = importer.target.reads();
        let Some(content) = meta.content_of(wanted) else {
            return Ok(Imported::Failed(match wanted {
                ContentKind::Export => "no export stream is stored for this item".into(),
                _ => "no readable JSON is stored for this item".into(),
            }));
        };
        let stream = match read_stream(&self.ctx.repo, &content).await {
            Ok(s) => s,
            Err(e) => return Ok(Imported::Failed(e.to_string())),
        };
        let mailbox = &self.ctx.mailbox;
        let target = importer.target.as_ref();
        let before: HashSet<ItemId> = state.targets();
        Self::append(
            importer,
            records,
            LedgerRecord::Started {
                folder: folder.clone(),
                source: meta.id.clone(),
            },
        )
        .await?;
        let mut last = String::new();
        for _ in 0..CREATE_ATTEMPTS {
            let created = match target.import_item(mailbox, folder, &stream).await {
                Ok(id) => Some(id),
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(TargetError::OutcomeUnknown(reason)) => {
                    last = reason;
                    // Was it created? Anything in the folder this restore does not know
                    // came from this import (one import at a time per folder).
                    let listing = match target.list_folder_items(mailbox, folder).await {
                        Ok(l) => l,
                        Err(e) if e.is_fatal() => return Err(e.into()),
                        Err(e) => {
                            return Ok(Imported::Failed(format!(
                                "import ended without an answer ({last}) and the folder could \
                                 not be listed to check it ({e}); the next run checks again"
                            )));
                        }
                    };
                    let new: Vec<ItemId> = listing
                        .into_iter()
                        .filter(|i| !before.contains(i))
                        .collect();
                    match new.as_slice() {
                        [] => continue,
                        [one] => match target.finish_item(mailbox, folder, one, &stream).await {
                            Ok(()) => Some(one.clone()),
                            Err(e) if e.is_fatal() => return Err(e.into()),
                            // Left as started: the next run finds it and finishes it.
                            Err(e) => {
                                return Ok(Imported::Failed(format!(
                                    "created, but not finished ({e}); the next run finishes it"
                                )));
                            }
                        },
                        _ => {
                            return Ok(Imported::Failed(format!(
                                "import ended without an answer ({last}) and the folder holds \
                                 {} unidentified items; not imported again",
                                new.len()
                            )));
                        }
                    }
                }
                Err(e @ TargetError::Rejected(_)) => {
                    Self::append(
                        importer,
                        records,
                        LedgerRecord::Refused {
                            folder: folder.clone(),
                            source: meta.id.clone(),
                        },
                    )
                    .await?;
                    return Ok(Imported::Failed(e.to_string()));
                }
                // Left as started: the next run lists the folder and sorts it out.
                Err(e) => return Ok(Imported::Failed(e.to_string())),
            };
            if let Some(id) = created {
                Self::append(
                    importer,
                    records,
                    LedgerRecord::Imported {
                        folder: folder.clone(),
                        source: meta.id.clone(),
                        target: id.clone(),
                    },
                )
                .await?;
                state.pending.retain(|p| p != &meta.id);
                state.done.insert(meta.id.clone(), id);
                return Ok(Imported::Created);
            }
        }
        Ok(Imported::Failed(format!(
            "import kept ending without an answer: {last}"
        )))
    }
}
