//! The mailbox import and export API (v1.0): every folder and item of a mailbox, whatever
//! its kind, exported as an opaque full-fidelity stream and imported back without side
//! effects (docs/GRAPH.md, "The mailbox import and export API").
//!
//! - [`GraphClient::exchange_mailbox_id`]: `GET /users/{id}/settings/exchange` →
//!   `primaryMailboxId` (`MBX:…`), the address of every call below
//!   (api/usersettings-list-exchange.md).
//! - [`GraphClient::mailbox_folder_tree`]: one `folders/delta` round, every folder class,
//!   flattened with paths (api/mailboxfolder-delta.md).
//! - [`GraphClient::mailbox_item_delta_page`]: per-folder item delta, like message delta
//!   (api/mailboxitem-delta.md); [`GraphClient::list_mailbox_items`] lists a folder
//!   (api/mailboxfolder-list-items.md).
//! - [`GraphClient::export_items`]: up to [`MAX_EXPORT_ITEMS`] items per request
//!   (api/mailbox-exportitems.md). The stream is kept byte for byte and never parsed.
//! - [`GraphClient::create_import_session`] + [`GraphClient::import_item`]: a
//!   pre-authenticated import URL, posted to **without** the bearer token
//!   (api/mailbox-createimportsession.md, concepts/import-exchange-mailbox-item.md).
//!
//! Ids of this API are Exchange (EWS) ids; the classic endpoints take REST ids. The two
//! are the same bytes in two base64 alphabets ([`rest_id`], [`ews_id`]).

use std::collections::{HashMap, HashSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::api::messages::{DeltaLink, DeltaNext, DeltaStart, Removed};
use crate::client::{GraphClient, Req, parse_json};
use crate::endpoint::Endpoint;
use crate::error::GraphError;
use atlas_core::SecretString;
use atlas_core::model::{FolderId, ItemId, MailboxId};

/// The most item ids one `exportItems` request may carry (api/mailbox-exportitems.md).
pub const MAX_EXPORT_ITEMS: usize = 20;
/// Delta pages are asked for at this size at most.
const MAX_DELTA_PAGE: u32 = 1000;
/// Guard against a server that reports a cycle in the folder tree.
const MAX_DEPTH: usize = 128;

/// The REST form (classic endpoints) of an EWS id (this API): the same bytes in URL-safe
/// base64 without padding. Ids already in REST form come back unchanged.
pub fn rest_id(ews: &str) -> String {
    ews.trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

/// The EWS form (this API) of a REST id (classic endpoints): standard base64, padded.
pub fn ews_id(rest: &str) -> String {
    let mut s: String = rest
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while s.len() % 4 != 0 {
        s.push('=');
    }
    s
}

/// A mailbox's id in this API (`MBX:…@…`), from `settings/exchange`. Never built by hand.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExchangeMailboxId(String);

impl ExchangeMailboxId {
    /// Wrap an id Graph returned earlier.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExchangeMailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A folder of this API (resources/mailboxfolder.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxFolder {
    /// Folder id (EWS form).
    pub id: FolderId,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Parent folder id.
    #[serde(default)]
    pub parent_folder_id: Option<FolderId>,
    /// Direct child folders.
    #[serde(default)]
    pub child_folder_count: Option<u32>,
    /// Items in the folder.
    #[serde(default)]
    pub total_item_count: Option<u64>,
    /// Locale-independent name of a folder Outlook created (`calendar`, `contacts` …).
    #[serde(default)]
    pub well_known_name: Option<String>,
    /// The folder class (`IPF.Note`, `IPF.Appointment`, `IPF.Contact`, `IPF.Task`,
    /// `IPF.StickyNote`, …).
    #[serde(rename = "type", default)]
    pub class: Option<String>,
    /// Present on folders a delta reports deleted.
    #[serde(rename = "@removed", default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
}

/// A folder with its place in the tree resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxFolderInfo {
    /// The folder as Graph returned it.
    pub folder: MailboxFolder,
    /// Parent id; `None` for folders directly under the mailbox root.
    pub parent_id: Option<FolderId>,
    /// Display names from the top of the mailbox down to this folder, inclusive.
    pub path: Vec<String>,
}

/// An item of this API (resources/mailboxitem.md): no content, only what tells versions
/// and kinds apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxItem {
    /// Item id (EWS form).
    pub id: ItemId,
    /// Version stamp: changes whenever the item does.
    #[serde(default)]
    pub change_key: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_date_time: Option<DateTime<Utc>>,
    /// Last change.
    #[serde(default)]
    pub last_modified_date_time: Option<DateTime<Utc>>,
    /// Categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// The message class (`IPM.Note`, `IPM.Appointment`, `IPM.Contact`, `IPM.Task`,
    /// `IPM.StickyNote`, …).
    #[serde(rename = "type", default)]
    pub class: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Present on removed items.
    #[serde(rename = "@removed", default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
}

/// One page of a folder's item delta.
#[derive(Debug, Clone)]
pub struct MailboxItemPage {
    /// Added or changed items.
    pub items: Vec<MailboxItem>,
    /// Ids reported as `@removed` (deleted or moved out).
    pub removed: Vec<ItemId>,
    /// Continue or done.
    pub next: DeltaNext,
}

/// One item of an `exportItems` answer (resources/exportitemresponse.md).
#[derive(Debug, Clone)]
pub struct ExportedItem {
    /// The id asked for.
    pub item_id: ItemId,
    /// Its version when exported.
    pub change_key: Option<String>,
    /// The opaque stream, decoded from base64, or the per-item error.
    pub data: Result<Bytes, ExportItemError>,
}

/// A per-item failure of `exportItems`: the other items of the request are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExportItemError {
    /// Exchange's code (`ErrorItemNotFound` …).
    #[serde(default)]
    pub code: String,
    /// Its message.
    #[serde(default)]
    pub message: String,
}

impl fmt::Display for ExportItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// An import session: a pre-authenticated URL and when it expires. The URL carries its
/// own credential, so it never appears in `Debug` or errors.
#[derive(Clone)]
pub struct ImportSession {
    /// Where to post items (no Authorization header).
    pub import_url: SecretString,
    /// When the URL stops working.
    pub expires: Option<DateTime<Utc>>,
}

impl fmt::Debug for ImportSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportSession")
            .field("import_url", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// What an import created or updated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedItem {
    /// The item's id in the target (EWS form).
    pub item_id: ItemId,
    /// Its version.
    #[serde(default)]
    pub change_key: Option<String>,
}

#[derive(Deserialize)]
struct SettingsWire {
    #[serde(rename = "primaryMailboxId", default)]
    primary: Option<String>,
}

#[derive(Deserialize)]
struct DeltaWire<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportWire {
    #[serde(default)]
    item_id: Option<ItemId>,
    #[serde(default)]
    change_key: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    error: Option<ExportItemError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionWire {
    import_url: String,
    #[serde(default)]
    expiration_date_time: Option<DateTime<Utc>>,
}

fn next_of(
    next_link: Option<String>,
    delta_link: Option<String>,
    endpoint: Endpoint,
) -> Result<DeltaNext, GraphError> {
    match (next_link, delta_link) {
        (Some(l), _) => Ok(DeltaNext::More(DeltaLink::new(l))),
        (None, Some(l)) => Ok(DeltaNext::Done(DeltaLink::new(l))),
        (None, None) => Err(GraphError::protocol(
            endpoint,
            "a delta page had neither a nextLink nor a deltaLink",
        )),
    }
}

/// Flatten folders into a tree: paths from parents, parents before children. Folders
/// whose parent is not in the list hang directly under the root.
fn resolve_tree(folders: &[MailboxFolder]) -> Vec<MailboxFolderInfo> {
    let ids: HashSet<FolderId> = folders.iter().map(|f| f.id.clone()).collect();
    let by_id: HashMap<FolderId, &MailboxFolder> =
        folders.iter().map(|f| (f.id.clone(), f)).collect();
    let mut out = Vec::with_capacity(folders.len());
    for f in folders {
        let parent_id = f.parent_folder_id.clone().filter(|p| ids.contains(p));
        let mut path = vec![f.display_name.clone()];
        let mut up = parent_id.clone();
        let mut depth = 0;
        while let Some(p) = up {
            depth += 1;
            if depth > MAX_DEPTH {
                break;
            }
            let Some(parent) = by_id.get(&p) else { break };
            path.push(parent.display_name.clone());
            up = parent.parent_folder_id.clone().filter(|p| ids.contains(p));
        }
        path.reverse();
        out.push(MailboxFolderInfo {
            folder: f.clone(),
            parent_id,
            path,
        });
    }
    out.sort_by(|a, b| a.path.len().cmp(&b.path.len()).then(a.path.cmp(&b.path)));
    out
}

impl GraphClient {
    fn mailbox_url(&self, mbx: &ExchangeMailboxId, rest: &[&str], query: &[(&str, &str)]) -> Url {
        let mut segments = vec!["admin", "exchange", "mailboxes", mbx.as_str()];
        segments.extend_from_slice(rest);
        self.url(&segments, query)
    }

    /// The mailbox's id in the import/export API (`primaryMailboxId`). A mailbox without
    /// one (the API is unavailable for it) is [`GraphError::Protocol`].
    pub async fn exchange_mailbox_id(
        &self,
        mailbox: &MailboxId,
    ) -> Result<ExchangeMailboxId, GraphError> {
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "settings",
                "exchange",
            ],
            &[],
        );
        let wire: SettingsWire = self
            .fetch_json(&Req::get(Endpoint::ExchangeSettings, url, Some(mailbox)))
            .await?;
        wire.primary
            .filter(|s| !s.is_empty())
            .map(ExchangeMailboxId)
            .ok_or_else(|| {
                GraphError::protocol(
                    Endpoint::ExchangeSettings,
                    "the mailbox has no primaryMailboxId",
                )
            })
    }

    /// Every folder of the mailbox, every class, hidden ones included, from one
    /// `folders/delta` round; parents before children, each with its path.
    pub async fn mailbox_folder_tree(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
    ) -> Result<Vec<MailboxFolderInfo>, GraphError> {
        let url = self.mailbox_url(mbx, &["folders", "delta"], &[]);
        let req = Req::get(Endpoint::MailboxFolders, url, Some(mailbox))
            .prefer(format!("odata.maxpagesize={MAX_DELTA_PAGE}"));
        let (mut all, _): (Vec<MailboxFolder>, _) = self.delta_round(req).await?;
        all.retain(|f| f.removed.is_none());
        // The last report of a folder wins (a round may repeat one).
        let mut seen = HashSet::new();
        all.reverse();
        all.retain(|f| seen.insert(f.id.clone()));
        all.reverse();
        Ok(resolve_tree(&all))
    }

    /// One folder by id or well-known name (`calendar`, `contacts`, `tasks`, `notes` …).
    pub async fn mailbox_folder(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
        id_or_well_known: &str,
    ) -> Result<MailboxFolder, GraphError> {
        let url = self.mailbox_url(mbx, &["folders", id_or_well_known], &[]);
        self.fetch_json(&Req::get(Endpoint::MailboxFolders, url, Some(mailbox)))
            .await
    }

    /// The direct children of a folder.
    pub async fn mailbox_child_folders(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
        parent: &FolderId,
    ) -> Result<Vec<MailboxFolder>, GraphError> {
        let url = self.mailbox_url(
            mbx,
            &["folders", parent.as_str(), "childFolders"],
            &[("$top", "100")],
        );
        self.collect_pages(Req::get(Endpoint::MailboxFolders, url, Some(mailbox)))
            .await
    }

    /// Create a folder of `class` under `parent` (the root when `None`). A sibling with the
    /// same name is [`GraphError::AlreadyExists`]; never retried blindly (a POST).
    pub async fn create_mailbox_folder(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
        parent: Option<&FolderId>,
        name: &str,
        class: &str,
    ) -> Result<MailboxFolder, GraphError> {
        let url = match parent {
            Some(p) => self.mailbox_url(mbx, &["folders", p.as_str(), "childFolders"], &[]),
            None => self.mailbox_url(mbx, &["folders"], &[]),
        };
        let body = serde_json::json!({"displayName": name, "type": class});
        self.fetch_json(&Req::post_json(
            Endpoint::CreateMailboxFolder,
            url,
            Some(mailbox),
            &body,
        ))
        .await
    }

    /// One page of a folder's item delta. An expired link is
    /// [`GraphError::SyncStateNotFound`]; a folder that went away is
    /// [`GraphError::NotFound`].
    pub async fn mailbox_item_delta_page(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
        start: DeltaStart<'_>,
        page_size: u32,
    ) -> Result<MailboxItemPage, GraphError> {
        let url = match start {
            DeltaStart::Initial(folder) => {
                self.mailbox_url(mbx, &["folders", folder.as_str(), "items", "delta"], &[])
            }
            DeltaStart::Link(link) => self.check_link(link.as_str(), Endpoint::MailboxItems)?,
        };
        let size = page_size.clamp(1, MAX_DELTA_PAGE);
        let req = Req::get(Endpoint::MailboxItems, url, Some(mailbox))
            .prefer(format!("odata.maxpagesize={size}"));
        let wire: DeltaWire<MailboxItem> = self.fetch_json(&req).await?;
        let mut items = Vec::with_capacity(wire.value.len());
        let mut removed = Vec::new();
        for i in wire.value {
            if i.removed.is_some() {
                removed.push(i.id);
            } else {
                items.push(i);
            }
        }
        Ok(MailboxItemPage {
            items,
            removed,
            next: next_of(wire.next_link, wire.delta_link, Endpoint::MailboxItems)?,
        })
    }

    /// Every item of a folder (paged).
    pub async fn list_mailbox_items(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
        folder: &FolderId,
    ) -> Result<Vec<MailboxItem>, GraphError> {
        let url = self.mailbox_url(
            mbx,
            &["folders", folder.as_str(), "items"],
            &[("$top", "1000")],
        );
        self.collect_pages(Req::get(Endpoint::MailboxItems, url, Some(mailbox)))
            .await
    }

    /// One page of at most one item of a folder: what a permission check costs.
    pub async fn probe_mailbox_items(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
        folder: &FolderId,
    ) -> Result<(), GraphError> {
        let url = self.mailbox_url(
            mbx,
            &["folders", folder.as_str(), "items"],
            &[("$top", "1")],
        );
        let _: serde_json::Value = self
            .fetch_json(&Req::get(Endpoint::MailboxItems, url, Some(mailbox)))
            .await?;
        Ok(())
    }

    /// Export up to [`MAX_EXPORT_ITEMS`] items of one mailbox in one request; one answer
    /// per id, in the order asked. A failure of one item is in its entry, not an `Err`.
    pub async fn export_items(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
        ids: &[ItemId],
    ) -> Result<Vec<ExportedItem>, GraphError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if ids.len() > MAX_EXPORT_ITEMS {
            return Err(GraphError::TooLarge {
                what: "an exportItems request",
                size: ids.len() as u64,
                limit: MAX_EXPORT_ITEMS as u64,
            });
        }
        let url = self.mailbox_url(mbx, &["exportItems"], &[]);
        let body = serde_json::json!({"itemIds": ids});
        let mut req = Req::post_json(Endpoint::ExportItems, url, Some(mailbox), &body);
        // Asking counts against no upload budget worth speaking of.
        req.upload = false;
        let page: crate::api::Page<ExportWire> = self.fetch_json(&req).await?;
        let mut by_id: HashMap<ItemId, ExportedItem> = HashMap::new();
        for (n, w) in page.value.into_iter().enumerate() {
            // The answer is documented in request order; an entry without an id is the
            // one at its position.
            let Some(item_id) = w.item_id.or_else(|| ids.get(n).cloned()) else {
                continue;
            };
            let data = match (w.data, w.error) {
                (_, Some(e)) => Err(e),
                (Some(d), None) => {
                    STANDARD
                        .decode(d.trim())
                        .map(Bytes::from)
                        .map_err(|_| ExportItemError {
                            code: "InvalidData".into(),
                            message: "the exported data is not base64".into(),
                        })
                }
                (None, None) => Err(ExportItemError {
                    code: "NoData".into(),
                    message: "the answer carried neither data nor an error".into(),
                }),
            };
            by_id.insert(
                item_id.clone(),
                ExportedItem {
                    item_id,
                    change_key: w.change_key,
                    data,
                },
            );
        }
        Ok(ids
            .iter()
            .map(|id| {
                by_id.remove(id).unwrap_or_else(|| ExportedItem {
                    item_id: id.clone(),
                    change_key: None,
                    data: Err(ExportItemError {
                        code: "Missing".into(),
                        message: "the answer had no entry for this item".into(),
                    }),
                })
            })
            .collect())
    }

    /// A new import session for the mailbox.
    pub async fn create_import_session(
        &self,
        mailbox: &MailboxId,
        mbx: &ExchangeMailboxId,
    ) -> Result<ImportSession, GraphError> {
        let url = self.mailbox_url(mbx, &["createImportSession"], &[]);
        let mut req = Req::post_json(
            Endpoint::CreateImportSession,
            url,
            Some(mailbox),
            &serde_json::json!({}),
        );
        req.upload = false;
        let wire: SessionWire = self.fetch_json(&req).await?;
        Ok(ImportSession {
            import_url: SecretString::new(wire.import_url),
            expires: wire.expiration_date_time,
        })
    }

    /// Create an item in `folder` from an export stream through `session` — without the
    /// bearer token: the URL is pre-authenticated. Never retried blindly: a lost answer is
    /// [`GraphError::OutcomeUnknown`]. An expired session is [`GraphError::Auth`]: create
    /// a new one.
    pub async fn import_item(
        &self,
        mailbox: &MailboxId,
        session: &ImportSession,
        folder: &FolderId,
        data: &[u8],
    ) -> Result<ImportedItem, GraphError> {
        let url = Url::parse(session.import_url.expose())
            .map_err(|_| GraphError::protocol(Endpoint::ImportItem, "importUrl is not a URL"))?;
        let body = serde_json::json!({
            "FolderId": folder.as_str(),
            "Mode": "create",
            "Data": STANDARD.encode(data),
        });
        let mut req = Req::post_json(Endpoint::ImportItem, url, Some(mailbox), &body);
        req.method = Method::POST;
        req.auth = false;
        let (_, _, bytes) = self.fetch(&req).await?;
        parse_json(&bytes, Endpoint::ImportItem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_forms_round_trip() {
        let rest = "AAMkAGI2UgAAAAE-_w";
        let ews = ews_id(rest);
        assert_eq!(ews, "AAMkAGI2UgAAAAE+/w==");
        assert_eq!(rest_id(&ews), rest);
        assert_eq!(rest_id(rest), rest, "a REST id stays as it is");
    }

    fn folder(id: &str, parent: &str, name: &str) -> MailboxFolder {
        MailboxFolder {
            id: FolderId::new(id),
            display_name: name.into(),
            parent_folder_id: Some(FolderId::new(parent)),
            child_folder_count: None,
            total_item_count: None,
            well_known_name: None,
            class: Some("IPF.Appointment".into()),
            removed: None,
        }
    }

    #[test]
    fn the_tree_gets_paths_and_parents_come_first() {
        let tree = resolve_tree(&[
            folder("c", "b", "Team"),
            folder("b", "root", "Calendar"),
            folder("x", "root", "Contacts"),
        ]);
        let paths: Vec<String> = tree.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(paths, ["Calendar", "Contacts", "Calendar/Team"]);
        assert_eq!(
            tree[0].parent_id, None,
            "the root is not a folder of the tree"
        );
        assert_eq!(tree[2].parent_id, Some(FolderId::new("b")));
    }

    #[test]
    fn session_urls_stay_out_of_debug() {
        let s = ImportSession {
            import_url: SecretString::new("https://x/importItem?authtoken=secret".to_owned()),
            expires: None,
        };
        assert!(!format!("{s:?}").contains("secret"));
    }
}
