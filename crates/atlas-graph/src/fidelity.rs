//! Mail in full fidelity (`atlas backup --fidelity full`): each message's export stream
//! from the mailbox import and export API, besides its MIME.
//!
//! Mail is enumerated with message delta and immutable ids (`Prefer:
//! IdType="ImmutableId"`), but `exportItems` takes **mailboxItem ids**
//! (api/mailbox-exportitems.md: "identifiers of mailboxItem objects"), which that API's
//! pages show as regular ids (`AAMk…`, api/mailboxitem-delta.md) and no page says an
//! immutable id is one. So the adapter learns each message's mailboxItem id from the
//! documented calls: the mailboxItem delta of the same folder (the folder's id in EWS
//! form, docs/GRAPH.md) reports every item with its `changeKey`, which message and
//! mailboxItem both inherit from outlookItem as "the version of the item". A message is
//! matched by its change key in its folder — the version delta just reported, which is
//! the version to export.
//!
//! The mailboxItem delta link of a folder travels with the folder's message delta link as
//! the port's second link (`atlas_core::ports::mail::join_links`; the snapshot keeps it
//! apart, as `itemDeltaLink`), so an incremental run asks only for what changed since
//! (one request for a quiet folder),
//! and only when a message of the folder needs its stream. A lookup that misses follows
//! the link once more (the message changed meanwhile), then enumerates the folder's
//! items once per run; a message still unmatched is that message's error.

use std::collections::{HashMap, HashSet};

use atlas_core::model::{FolderId, ItemId};
use atlas_core::ports::{SourceError, SourceItem, SourceMailbox};
use bytes::Bytes;

use crate::api::mailbox::{ExchangeMailboxId, MAX_EXPORT_ITEMS, ews_id};
use crate::api::messages::{DeltaLink, DeltaNext, DeltaStart};
use crate::source::{GraphSource, item_error, run_error};

/// Page size asked of the mailboxItem delta (the server may serve fewer).
const ITEM_DELTA_PAGE: u32 = 1000;

/// What the adapter knows of one mail folder's mailboxItem ids.
#[derive(Debug, Default)]
pub(crate) struct StreamIds {
    /// Where the folder's mailboxItem delta continues: the saved link, then the newest
    /// one of this run.
    pub(crate) link: Option<String>,
    /// mailboxItem id by change key.
    by_change_key: HashMap<String, ItemId>,
    /// Whether this round enumerated the folder's items from the start.
    enumerated: bool,
}

impl StreamIds {
    /// A new message round of the folder starts (from `saved`, the mailboxItem link saved
    /// with its message link): what an earlier round learnt stays usable, the fallback to
    /// a whole enumeration is allowed again.
    pub(crate) fn round_starts(&mut self, saved: Option<&str>) {
        if self.link.is_none() {
            self.link = saved.map(str::to_owned);
        }
        self.enumerated = false;
    }
}

/// How a folder's mailboxItem delta is followed to find ids not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Catch {
    /// From the last link (or from the start when there is none).
    Continue,
    /// A whole enumeration.
    Enumerate,
}

impl GraphSource {
    /// Export streams of mail messages of one mailbox: mailboxItem ids learnt from the
    /// folders' mailboxItem delta, then up to [`MAX_EXPORT_ITEMS`] per `exportItems`.
    /// One answer per item, in order.
    pub(crate) async fn mail_streams(
        &self,
        mailbox: &SourceMailbox,
        items: &[SourceItem],
    ) -> Result<Vec<Result<Bytes, SourceError>>, SourceError> {
        let mbx = self.mbx(mailbox).await?;
        let mut ids: Vec<Option<ItemId>> = vec![None; items.len()];
        for catch in [None, Some(Catch::Continue), Some(Catch::Enumerate)] {
            let mut missing: HashSet<FolderId> = HashSet::new();
            for (slot, item) in ids.iter_mut().zip(items) {
                if slot.is_none() {
                    *slot = self.stream_id(mailbox, item);
                    if slot.is_none() {
                        if let Some(folder) = &item.folder {
                            missing.insert(folder.clone());
                        }
                    }
                }
            }
            if missing.is_empty() {
                break;
            }
            let Some(catch) = catch else { continue };
            for folder in missing {
                self.learn_stream_ids(mailbox, &mbx, &folder, catch).await?;
            }
        }
        let mut out: Vec<Result<Bytes, SourceError>> = ids
            .iter()
            .map(|id| match id {
                Some(_) => Ok(Bytes::new()),
                None => Err(SourceError::Item(
                    "no mailboxItem of the message's folder has its change key (it changed or moved since it was listed)"
                        .into(),
                )),
            })
            .collect();
        let found: Vec<(usize, ItemId)> = ids
            .into_iter()
            .enumerate()
            .filter_map(|(n, id)| id.map(|id| (n, id)))
            .collect();
        for batch in found.chunks(MAX_EXPORT_ITEMS) {
            let batch_ids: Vec<ItemId> = batch.iter().map(|(_, id)| id.clone()).collect();
            let answers = self
                .client()
                .export_items(&mailbox.id, &mbx, &batch_ids)
                .await
                .map_err(item_error)?;
            for ((n, _), answer) in batch.iter().zip(answers) {
                out[*n] = answer
                    .data
                    .map_err(|e| SourceError::Item(format!("export of the message failed: {e}")));
            }
        }
        Ok(out)
    }

    /// A folder's message round ends with messages in its last page: follow the folder's
    /// mailboxItem delta now, so the link saved with the round's is the one past their
    /// versions. Their streams are fetched after the page is returned — too late to move
    /// the saved link on — so without this a folder whose changes fit one page never
    /// saved a mailboxItem link and every later run enumerated its items from the start.
    /// The ids learnt here serve those streams: no request is added.
    pub(crate) async fn learn_before_round_ends(
        &self,
        mailbox: &SourceMailbox,
        folder: &FolderId,
    ) -> Result<(), SourceError> {
        let mbx = self.mbx(mailbox).await?;
        self.learn_stream_ids(mailbox, &mbx, folder, Catch::Continue)
            .await
    }

    /// The mailboxItem id of a message, if its folder's delta reported its version.
    fn stream_id(&self, mailbox: &SourceMailbox, item: &SourceItem) -> Option<ItemId> {
        let folder = item.folder.as_ref()?;
        let change_key = item.change_key.as_ref()?;
        self.with_stream_ids(mailbox, folder, |s| {
            s.by_change_key.get(change_key).cloned()
        })
    }

    /// Follow a folder's mailboxItem delta to the end of its round, recording every
    /// item's id by change key. [`Catch::Enumerate`] runs at most once per round.
    async fn learn_stream_ids(
        &self,
        mailbox: &SourceMailbox,
        mbx: &ExchangeMailboxId,
        folder: &FolderId,
        catch: Catch,
    ) -> Result<(), SourceError> {
        let start = self.with_stream_ids(mailbox, folder, |s| match catch {
            Catch::Enumerate if s.enumerated => None,
            Catch::Enumerate => Some(None),
            Catch::Continue => Some(s.link.clone()),
        });
        let Some(mut link) = start else {
            return Ok(());
        };
        let mut from_start = link.is_none();
        let ews_folder = FolderId::new(ews_id(folder.as_str()));
        let mut learnt: Vec<(String, ItemId)> = Vec::new();
        let done = loop {
            let saved;
            let from = match &link {
                Some(l) => {
                    saved = DeltaLink::new(l.clone());
                    DeltaStart::Link(&saved)
                }
                None => DeltaStart::Initial(&ews_folder),
            };
            let page = match self
                .client()
                .mailbox_item_delta_page(&mailbox.id, mbx, from, ITEM_DELTA_PAGE)
                .await
            {
                Ok(p) => p,
                // A saved link that expired: enumerate instead.
                Err(crate::error::GraphError::SyncStateNotFound { .. }) if link.is_some() => {
                    link = None;
                    from_start = true;
                    continue;
                }
                Err(e) => return Err(run_error(e)),
            };
            learnt.extend(
                page.items
                    .into_iter()
                    .filter_map(|i| i.change_key.map(|k| (k, i.id))),
            );
            match page.next {
                DeltaNext::More(l) => link = Some(l.as_str().to_owned()),
                DeltaNext::Done(l) => break l.as_str().to_owned(),
            }
        };
        self.with_stream_ids(mailbox, folder, |s| {
            s.by_change_key.extend(learnt);
            s.link = Some(done);
            s.enumerated |= from_start;
        });
        Ok(())
    }
}
