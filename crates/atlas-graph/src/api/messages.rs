//! Messages: per-folder delta, metadata, raw MIME (graph-api.md §5–6).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::{ByteStream, GraphClient, Req};
use crate::endpoint::Endpoint;
use crate::error::GraphError;
use atlas_core::model::{FolderId, ItemId, MailboxId};

/// Metadata selected in delta rounds: what SPEC §5 keeps next to the MIME (folder, read
/// state, flag, categories, importance, dates, ids) plus what listings show.
pub const DELTA_SELECT: &str = "id,changeKey,internetMessageId,conversationId,subject,from,\
toRecipients,ccRecipients,bccRecipients,receivedDateTime,sentDateTime,createdDateTime,\
lastModifiedDateTime,isRead,isDraft,importance,flag,categories,hasAttachments,parentFolderId";

/// Largest page Atlas asks for with `Prefer: odata.maxpagesize` (what mature clients use).
pub const MAX_DELTA_PAGE: u32 = 200;

/// An email address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EmailAddress {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// SMTP address.
    #[serde(default)]
    pub address: Option<String>,
}

/// `{ "emailAddress": {…} }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    /// The address.
    #[serde(default)]
    pub email_address: EmailAddress,
}

/// Follow-up flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FollowupFlag {
    /// `notFlagged`, `flagged`, `complete`.
    #[serde(default)]
    pub flag_status: Option<String>,
}

/// `@removed` marker of a delta item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Removed {
    /// `deleted` or `changed`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Message metadata (no body; the MIME carries the content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Immutable id.
    pub id: ItemId,
    /// Version stamp.
    #[serde(default)]
    pub change_key: Option<String>,
    /// RFC 5322 Message-ID.
    #[serde(default)]
    pub internet_message_id: Option<String>,
    /// Conversation id.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Subject. Sensitive: never log above trace.
    #[serde(default)]
    pub subject: Option<String>,
    /// From.
    #[serde(default)]
    pub from: Option<Recipient>,
    /// To.
    #[serde(default)]
    pub to_recipients: Vec<Recipient>,
    /// Cc.
    #[serde(default)]
    pub cc_recipients: Vec<Recipient>,
    /// Bcc.
    #[serde(default)]
    pub bcc_recipients: Vec<Recipient>,
    /// Received.
    #[serde(default)]
    pub received_date_time: Option<DateTime<Utc>>,
    /// Sent.
    #[serde(default)]
    pub sent_date_time: Option<DateTime<Utc>>,
    /// Created.
    #[serde(default)]
    pub created_date_time: Option<DateTime<Utc>>,
    /// Last modified.
    #[serde(default)]
    pub last_modified_date_time: Option<DateTime<Utc>>,
    /// Read state (absent in an update that did not touch it).
    #[serde(default)]
    pub is_read: Option<bool>,
    /// Draft.
    #[serde(default)]
    pub is_draft: Option<bool>,
    /// `low`, `normal`, `high`.
    #[serde(default)]
    pub importance: Option<String>,
    /// Follow-up flag.
    #[serde(default)]
    pub flag: Option<FollowupFlag>,
    /// Categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// False when only inline attachments exist.
    #[serde(default)]
    pub has_attachments: Option<bool>,
    /// Folder.
    #[serde(default)]
    pub parent_folder_id: Option<FolderId>,
    /// Present on removed items.
    #[serde(rename = "@removed", default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
}

/// An `@odata.nextLink` or `@odata.deltaLink`. Opaque and token-bearing: never logged
/// (redacted `Debug`), stored only by the caller once everything it covers is durable.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeltaLink(String);

impl DeltaLink {
    /// Wrap a link saved by an earlier run.
    pub fn new(link: impl Into<String>) -> Self {
        Self(link.into())
    }

    /// The link, for storing.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeltaLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeltaLink(<redacted>)")
    }
}

/// How a delta page ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaNext {
    /// More pages in this round.
    More(DeltaLink),
    /// Round complete: the link to save for the next run.
    Done(DeltaLink),
}

/// Where a delta request starts.
#[derive(Debug, Clone, Copy)]
pub enum DeltaStart<'a> {
    /// A full enumeration of this folder.
    Initial(&'a FolderId),
    /// A `nextLink` of the current round or a saved `deltaLink`.
    Link(&'a DeltaLink),
}

/// One page of a folder's delta.
#[derive(Debug, Clone)]
pub struct DeltaPage {
    /// Added or changed messages.
    pub messages: Vec<Message>,
    /// Ids reported as `@removed`.
    pub removed: Vec<ItemId>,
    /// Continue or done.
    pub next: DeltaNext,
}

#[derive(Deserialize)]
struct DeltaWire {
    #[serde(default)]
    value: Vec<Message>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

/// The result of a whole delta round.
#[derive(Debug, Clone)]
pub struct DeltaRound {
    /// Added or changed messages (the same id may appear twice: Graph replays).
    pub messages: Vec<Message>,
    /// Removed ids.
    pub removed: Vec<ItemId>,
    /// The link to save.
    pub delta_link: DeltaLink,
}

impl GraphClient {
    /// One delta page. Query options go on the initial request only (Graph encodes them in
    /// the token); `Prefer: odata.maxpagesize` is sent every time. An expired or reset
    /// token is [`GraphError::SyncStateNotFound`]: start again with `Initial`.
    pub async fn message_delta_page(
        &self,
        mailbox: &MailboxId,
        start: DeltaStart<'_>,
        page_size: u32,
    ) -> Result<DeltaPage, GraphError> {
        let url = match start {
            DeltaStart::Initial(folder) => self.url(
                &[
                    "users",
                    crate::api::user_segment(mailbox),
                    "mailFolders",
                    folder.as_str(),
                    "messages",
                    "delta",
                ],
                &[("$select", DELTA_SELECT)],
            ),
            DeltaStart::Link(link) => self.check_link(link.as_str(), Endpoint::MessageDelta)?,
        };
        let size = page_size.clamp(1, MAX_DELTA_PAGE);
        let req = Req::get(Endpoint::MessageDelta, url, Some(mailbox))
            .prefer(format!("odata.maxpagesize={size}"));
        let wire: DeltaWire = self.fetch_json(&req).await?;
        split_delta(wire)
    }

    /// A whole delta round in memory (convenient for small folders and tests; backup should
    /// page with [`Self::message_delta_page`] to keep memory bounded).
    pub async fn message_delta_round(
        &self,
        mailbox: &MailboxId,
        start: DeltaStart<'_>,
        page_size: u32,
    ) -> Result<DeltaRound, GraphError> {
        let mut messages = Vec::new();
        let mut removed = Vec::new();
        let mut page = self.message_delta_page(mailbox, start, page_size).await?;
        loop {
            messages.append(&mut page.messages);
            removed.append(&mut page.removed);
            match page.next {
                DeltaNext::Done(delta_link) => {
                    return Ok(DeltaRound {
                        messages,
                        removed,
                        delta_link,
                    });
                }
                DeltaNext::More(link) => {
                    page = self
                        .message_delta_page(mailbox, DeltaStart::Link(&link), page_size)
                        .await?;
                }
            }
        }
    }

    /// A message's JSON as Graph returns it (`$select` optional).
    pub async fn get_message_json(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
        select: Option<&str>,
    ) -> Result<serde_json::Value, GraphError> {
        let query: Vec<(&str, &str)> = select.map(|s| ("$select", s)).into_iter().collect();
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
            ],
            &query,
        );
        self.fetch_json(&Req::get(Endpoint::GetMessage, url, Some(mailbox)))
            .await
    }

    /// A message's metadata (the [`DELTA_SELECT`] fields).
    pub async fn get_message(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
    ) -> Result<Message, GraphError> {
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
            ],
            &[("$select", DELTA_SELECT)],
        );
        self.fetch_json(&Req::get(Endpoint::GetMessage, url, Some(mailbox)))
            .await
    }

    /// The raw RFC 5322 MIME (`$value`) as a stream: memory stays bounded for a 150 MB
    /// message. The mailbox's concurrency slot is held until the stream is dropped.
    pub async fn get_mime(
        &self,
        mailbox: &MailboxId,
        message: &ItemId,
    ) -> Result<ByteStream, GraphError> {
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "messages",
                message.as_str(),
                "$value",
            ],
            &[],
        );
        self.stream(&Req::get(Endpoint::MessageMime, url, Some(mailbox)))
            .await
    }

    /// Ids of the messages in `folder` that carry single-value extended property
    /// `property_id` (e.g. `String {guid} Name AtlasRestoreId`) equal to `value`; restore
    /// uses it to find what an earlier, interrupted run already created.
    pub async fn find_messages_by_property(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
        property_id: &str,
        value: &str,
    ) -> Result<Vec<ItemId>, GraphError> {
        #[derive(Deserialize)]
        struct IdOnly {
            id: ItemId,
        }
        let filter = format!(
            "singleValueExtendedProperties/any(ep: ep/id eq '{}' and ep/value eq '{}')",
            odata_quote(property_id),
            odata_quote(value)
        );
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "mailFolders",
                folder.as_str(),
                "messages",
            ],
            &[("$filter", &filter), ("$select", "id"), ("$top", "100")],
        );
        let items: Vec<IdOnly> = self
            .collect_pages(Req::get(Endpoint::GetMessage, url, Some(mailbox)))
            .await?;
        Ok(items.into_iter().map(|i| i.id).collect())
    }
}

/// Escape a string literal for OData (`'` doubled).
pub(crate) fn odata_quote(s: &str) -> String {
    s.replace('\'', "''")
}

fn split_delta(wire: DeltaWire) -> Result<DeltaPage, GraphError> {
    let next = match (wire.next_link, wire.delta_link) {
        (Some(next), _) => DeltaNext::More(DeltaLink(next)),
        (None, Some(delta)) => DeltaNext::Done(DeltaLink(delta)),
        (None, None) => {
            return Err(GraphError::protocol(
                Endpoint::MessageDelta,
                "delta page has neither @odata.nextLink nor @odata.deltaLink",
            ));
        }
    };
    let mut messages = Vec::with_capacity(wire.value.len());
    let mut removed = Vec::new();
    for m in wire.value {
        if m.removed.is_some() {
            removed.push(m.id);
        } else {
            messages.push(m);
        }
    }
    Ok(DeltaPage {
        messages,
        removed,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_delta_page_splits_items_and_removals() {
        let json = r##"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
          "@odata.nextLink":"https://graph.microsoft.com/v1.0/me/mailfolders('AQMk')/messages/delta?$skiptoken=GwcBoTmPuoTQWfcsAbkYM",
          "value":[
            {"@odata.type":"#microsoft.graph.message","@odata.etag":"W/\"CQAAABYAAAARn2vdzPIRT6vm0jT8dR3rAAATc7TL\"",
             "id":"AAMkADNkNAAASq35xAAA=","receivedDateTime":"2016-12-09T20:42:39Z","sentDateTime":"2016-12-09T20:42:36Z",
             "hasAttachments":false,"internetMessageId":"<BY2PR@x.outlook.com>","subject":"RE: Seattle Marketing",
             "isRead":true,"importance":"normal","flag":{"flagStatus":"notFlagged"},"categories":["Blue"],
             "from":{"emailAddress":{"name":"Megan","address":"megan@contoso.com"}},
             "toRecipients":[{"emailAddress":{"name":"A","address":"a@contoso.com"}}],
             "body":{"contentType":"html","content":"<html/>"}},
            {"@odata.type":"#microsoft.graph.message","id":"AAMkADNkNAAASq35yAAA=","@removed":{"reason":"deleted"}}
          ]}"##;
        let page = split_delta(serde_json::from_str(json).expect("wire")).expect("page");
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.removed, vec![ItemId::from("AAMkADNkNAAASq35yAAA=")]);
        let m = &page.messages[0];
        assert_eq!(m.is_read, Some(true));
        assert_eq!(m.categories, vec!["Blue".to_owned()]);
        assert_eq!(
            m.from
                .as_ref()
                .and_then(|f| f.email_address.address.as_deref()),
            Some("megan@contoso.com")
        );
        assert!(matches!(page.next, DeltaNext::More(_)));

        let last: DeltaWire = serde_json::from_str(
            r#"{"value":[],"@odata.deltaLink":"https://graph.microsoft.com/v1.0/x?$deltatoken=abc"}"#,
        )
        .expect("wire");
        assert!(matches!(
            split_delta(last).expect("page").next,
            DeltaNext::Done(_)
        ));
        let broken: DeltaWire = serde_json::from_str(r#"{"value":[]}"#).expect("wire");
        assert!(split_delta(broken).is_err());
    }

    #[test]
    fn delta_links_are_redacted_in_debug() {
        let l = DeltaLink::new("https://graph/x?$deltatoken=SECRET");
        assert!(!format!("{l:?}").contains("SECRET"));
        assert!(!format!("{:?}", DeltaNext::Done(l)).contains("SECRET"));
    }

    #[test]
    fn odata_literals_are_escaped() {
        assert_eq!(odata_quote("O'Brien"), "O''Brien");
    }
}
