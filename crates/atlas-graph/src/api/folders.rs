//! Mail folders: the whole tree, flattened, with paths (graph-api.md §4).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::client::{GraphClient, Req};
use crate::endpoint::Endpoint;
use crate::error::GraphError;
use atlas_core::model::{FolderId, MailboxId};

/// Page size for folder listings (Graph's default is 10).
const FOLDER_PAGE: &str = "100";
/// Guard against a server that reports a cycle or an absurd depth.
const MAX_DEPTH: usize = 128;

/// Well-known folders resolved by name (v1.0 has no `wellKnownName` property, so the only
/// way to recognise them, whatever the mailbox language, is to ask for each by name).
pub const WELL_KNOWN_FOLDERS: &[&str] = &[
    "inbox",
    "sentitems",
    "deleteditems",
    "drafts",
    "junkemail",
    "archive",
    "outbox",
];

/// A mail folder as Graph returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailFolder {
    /// Folder id.
    pub id: FolderId,
    /// Display name (localised for well-known folders).
    #[serde(default)]
    pub display_name: String,
    /// Parent folder id.
    #[serde(default)]
    pub parent_folder_id: Option<FolderId>,
    /// Number of direct child folders.
    #[serde(default)]
    pub child_folder_count: Option<u32>,
    /// Items in the folder (includes non-mail items).
    #[serde(default)]
    pub total_item_count: Option<u64>,
    /// Unread items.
    #[serde(default)]
    pub unread_item_count: Option<u64>,
    /// Hidden folder.
    #[serde(default)]
    pub is_hidden: Option<bool>,
    /// `#microsoft.graph.mailSearchFolder` for search folders.
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
}

impl MailFolder {
    /// Search folders hold views of other folders' items, not items of their own.
    pub fn is_search_folder(&self) -> bool {
        self.odata_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("#microsoft.graph.mailSearchFolder"))
    }
}

/// A folder with its place in the tree resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderInfo {
    /// Folder id.
    pub id: FolderId,
    /// Parent id; `None` for folders directly under the mailbox root.
    pub parent_id: Option<FolderId>,
    /// Display name.
    pub display_name: String,
    /// Display names from the top of the mailbox down to this folder, inclusive (a list, so a
    /// `/` inside a name needs no escaping).
    pub path: Vec<String>,
    /// Well-known name (`inbox`, …) when resolved.
    pub well_known: Option<String>,
    /// Items in the folder.
    pub total_item_count: u64,
    /// Unread items.
    pub unread_item_count: u64,
    /// Direct child folders.
    pub child_folder_count: u32,
    /// Hidden folder.
    pub is_hidden: bool,
    /// Search folder (usually skipped by backup).
    pub is_search_folder: bool,
}

/// What [`GraphClient::list_folder_tree`] includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderTreeOptions {
    /// Ask for hidden folders too (`includeHiddenFolders=true`).
    pub include_hidden: bool,
    /// Add the Recoverable Items "Deletions" folder (only reachable by well-known name) and
    /// its children.
    pub include_recoverable_items: bool,
    /// Resolve [`WELL_KNOWN_FOLDERS`] (one request each).
    pub resolve_well_known: bool,
}

impl Default for FolderTreeOptions {
    fn default() -> Self {
        Self {
            include_hidden: false,
            include_recoverable_items: false,
            resolve_well_known: true,
        }
    }
}

impl GraphClient {
    /// Folders directly under the mailbox root.
    pub async fn list_top_folders(
        &self,
        mailbox: &MailboxId,
        include_hidden: bool,
    ) -> Result<Vec<MailFolder>, GraphError> {
        let url = self.url(
            &["users", crate::api::user_segment(mailbox), "mailFolders"],
            &folder_query(include_hidden),
        );
        self.collect_pages(Req::get(Endpoint::ListFolders, url, Some(mailbox)))
            .await
    }

    /// Direct children of one folder.
    pub async fn list_child_folders(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
        include_hidden: bool,
    ) -> Result<Vec<MailFolder>, GraphError> {
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "mailFolders",
                folder.as_str(),
                "childFolders",
            ],
            &folder_query(include_hidden),
        );
        self.collect_pages(Req::get(Endpoint::ListFolders, url, Some(mailbox)))
            .await
    }

    /// One folder by id or well-known name.
    pub async fn get_folder(
        &self,
        mailbox: &MailboxId,
        folder: &FolderId,
    ) -> Result<MailFolder, GraphError> {
        let url = self.url(
            &[
                "users",
                crate::api::user_segment(mailbox),
                "mailFolders",
                folder.as_str(),
            ],
            &[],
        );
        self.fetch_json(&Req::get(Endpoint::ListFolders, url, Some(mailbox)))
            .await
    }

    /// The whole folder tree, parents before children, by recursive `childFolders` calls.
    pub async fn list_folder_tree(
        &self,
        mailbox: &MailboxId,
        opts: FolderTreeOptions,
    ) -> Result<Vec<FolderInfo>, GraphError> {
        let mut roots = self.list_top_folders(mailbox, opts.include_hidden).await?;
        let mut well_known: HashMap<FolderId, String> = HashMap::new();
        if opts.resolve_well_known {
            for name in WELL_KNOWN_FOLDERS {
                match self.get_folder(mailbox, &FolderId::from(*name)).await {
                    Ok(f) => {
                        well_known.insert(f.id, (*name).to_owned());
                    }
                    Err(GraphError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if opts.include_recoverable_items {
            let name = "recoverableitemsdeletions";
            match self.get_folder(mailbox, &FolderId::from(name)).await {
                Ok(f) => {
                    well_known.insert(f.id.clone(), name.to_owned());
                    if !roots.iter().any(|r| r.id == f.id) {
                        roots.push(f);
                    }
                }
                Err(GraphError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }

        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut queue: VecDeque<(MailFolder, Option<FolderId>, Vec<String>)> = roots
            .into_iter()
            .map(|f| {
                let path = vec![f.display_name.clone()];
                (f, None, path)
            })
            .collect();
        while let Some((folder, parent_id, path)) = queue.pop_front() {
            if !seen.insert(folder.id.clone()) || path.len() > MAX_DEPTH {
                continue;
            }
            let has_children = folder.child_folder_count.is_none_or(|n| n > 0);
            if has_children {
                let children = self
                    .list_child_folders(mailbox, &folder.id, opts.include_hidden)
                    .await?;
                for child in children {
                    let mut child_path = path.clone();
                    child_path.push(child.display_name.clone());
                    queue.push_back((child, Some(folder.id.clone()), child_path));
                }
            }
            out.push(FolderInfo {
                well_known: well_known.get(&folder.id).cloned(),
                is_search_folder: folder.is_search_folder(),
                total_item_count: folder.total_item_count.unwrap_or(0),
                unread_item_count: folder.unread_item_count.unwrap_or(0),
                child_folder_count: folder.child_folder_count.unwrap_or(0),
                is_hidden: folder.is_hidden.unwrap_or(false),
                display_name: folder.display_name,
                id: folder.id,
                parent_id,
                path,
            });
        }
        Ok(out)
    }
}

fn folder_query(include_hidden: bool) -> Vec<(&'static str, &'static str)> {
    let mut q = vec![("$top", FOLDER_PAGE)];
    if include_hidden {
        q.push(("includeHiddenFolders", "true"));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_folder_json_parses() {
        let json = r##"{"value":[
            {"id":"AQMkADYAAAIBDAAAAA==","displayName":"Inbox","parentFolderId":"AQMkADYAAAIBCAAAAA==",
             "childFolderCount":1,"unreadItemCount":70,"totalItemCount":71,"isHidden":false},
            {"@odata.type":"#microsoft.graph.mailSearchFolder","id":"S1","displayName":"Search",
             "isSupported":true,"filterQuery":"x"}]}"##;
        let page: crate::api::Page<MailFolder> = serde_json::from_str(json).expect("page");
        assert_eq!(page.value[0].display_name, "Inbox");
        assert_eq!(page.value[0].total_item_count, Some(71));
        assert!(!page.value[0].is_search_folder());
        assert!(page.value[1].is_search_folder());
    }
}
