//! The mailbox import and export API (v1.0; resources/mailbox-import-export-api-overview.md).
//!
//! - `GET /users/{id}/settings/exchange` → `primaryMailboxId` (api/usersettings-list-exchange.md).
//! - `/admin/exchange/mailboxes/{mailboxId}/folders[/{id}[/childFolders]]`: list (page
//!   size 10, `$skip`, `$top`, `$select`, `$filter=type eq '…'`), get, create
//!   (`displayName` and `type` required), update, delete (api/mailbox-list-folders.md,
//!   resources/mailboxfolder.md); every folder class, hidden ones included.
//! - `…/folders/delta` and `…/folders/{id}/childFolders/delta` (api/mailboxfolder-delta.md).
//! - `…/folders/{id}/items[/{id}]`, `…/items/delta` (api/mailboxfolder-list-items.md,
//!   api/mailboxitem-delta.md): messages and every other item of the folder as
//!   mailboxItem (`type` is the message class, `size` its length).
//! - `POST …/exportItems` with up to 20 `itemIds` of the mailbox → one exportItemResponse
//!   per id: `{itemId, changeKey, data}` or `{itemId, error: {code, message}}`
//!   (api/mailbox-exportitems.md, resources/exportitemresponse.md).
//! - `POST …/createImportSession` → `{importUrl, expirationDateTime}`; `POST {importUrl}`
//!   **without** an Authorization header, `{FolderId, Mode: create|update, Data, ItemId,
//!   ChangeKey}` → `{itemId, changeKey}` (api/mailbox-createimportsession.md,
//!   concepts/import-exchange-mailbox-item.md). An import never sends meeting mail.
//!
//! Ids here are Exchange (EWS) ids: the same bytes as the REST ids of the classic
//! endpoints in standard base64 (`+`, `/`, `=` padding) instead of URL-safe base64.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::graph::{bad_select, item_not_found, next_link, parse_top};
use crate::http::{Req, Resp};
use crate::items::item_class;
use crate::model::{Mailbox, ROOT_FOLDER, Tenant};
use crate::server::{Sim, lock};
use crate::stream::{self, Imported};

const GRAPH_CTX: &str = "https://graph.microsoft.com/v1.0/$metadata";

/// An open import session (concepts/import-exchange-mailbox-item.md).
#[derive(Debug)]
pub(crate) struct ImportSession {
    pub mailbox: usize,
    pub mailbox_id: String,
    pub expires: DateTime<Utc>,
}

/// The EWS form of a REST id (standard base64 alphabet, padded).
pub(crate) fn ews(rest: &str) -> String {
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

/// The REST form of an EWS id.
pub(crate) fn rest(ews_id: &str) -> String {
    ews_id
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

fn mailbox_id_of(user_id: &str, tenant_id: &str) -> String {
    let short = |s: &str| s.replace('-', "").chars().take(8).collect::<String>();
    format!("MBX:{}@{}", short(user_id), short(tenant_id))
}

fn err(status: StatusCode, code: &str, msg: &str) -> Resp {
    Resp::error(status, code, msg)
}

/// Item views of the mailbox API: (key, class, version, created, modified, categories, size).
struct Entry {
    key: u64,
    class: String,
    change_key: String,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    categories: Vec<String>,
    size: usize,
    received: Option<DateTime<Utc>>,
}

fn entries(mbx: &Mailbox, folder: u64) -> Vec<Entry> {
    let mut out: Vec<Entry> = mbx
        .messages
        .values()
        .filter(|m| m.folder == folder)
        .map(|m| Entry {
            key: m.key,
            class: item_class::MESSAGE.to_owned(),
            change_key: mbx.change_key(m),
            created: m.created,
            modified: m.modified,
            categories: m.categories.clone(),
            size: m.content.raw_mime.as_ref().map_or_else(
                || {
                    m.content.body.content.len()
                        + m.content
                            .attachments
                            .iter()
                            .map(crate::model::Attachment::size)
                            .sum::<usize>()
                        + 1024
                },
                |r| r.len(),
            ),
            received: Some(m.received),
        })
        .collect();
    out.extend(
        mbx.pim
            .items
            .values()
            .filter(|i| i.folder == folder)
            .map(|i| Entry {
                key: i.key,
                class: i.class.clone(),
                change_key: mbx.item_change_key(i),
                created: i.created,
                modified: i.modified,
                categories: i.categories.clone(),
                size: serde_json::to_vec(&i.props).map_or(0, |v| v.len())
                    + i.attachments
                        .iter()
                        .map(crate::model::Attachment::size)
                        .sum::<usize>()
                    + i.photo.as_ref().map_or(0, |p| p.bytes.len()),
                received: None,
            }),
    );
    out.sort_by_key(|e| e.key);
    out
}

fn item_id(mbx: &Mailbox, key: u64) -> String {
    // Messages and items share the key space and the id form; a message's regular id
    // carries its location generation.
    match mbx.messages.get(&key) {
        Some(m) => ews(&mbx.message_id(m, false)),
        None => ews(&mbx.item_id(key)),
    }
}

fn entry_json(mbx: &Mailbox, e: &Entry) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("@odata.type".into(), json!("#microsoft.graph.mailboxItem"));
    o.insert(
        "@odata.etag".into(),
        json!(format!("W/\"{}\"", e.change_key)),
    );
    o.insert("createdDateTime".into(), json!(crate::json::ts(e.created)));
    o.insert(
        "lastModifiedDateTime".into(),
        json!(crate::json::ts(e.modified)),
    );
    o.insert("changeKey".into(), json!(e.change_key));
    o.insert("categories".into(), json!(e.categories));
    o.insert("type".into(), json!(e.class));
    o.insert("size".into(), json!(e.size));
    o.insert("id".into(), json!(item_id(mbx, e.key)));
    o
}

impl Sim {
    /// Resolves `MBX:…` to the user index of a mailbox.
    pub(crate) fn mailbox_by_id(&self, id: &str) -> Option<usize> {
        let t = lock(&self.tenant);
        t.mailboxes
            .keys()
            .copied()
            .find(|idx| mailbox_id_of(&t.users[*idx].id, &t.id).eq_ignore_ascii_case(id))
    }

    fn mailbox_url(&self, id: &str) -> String {
        format!("{}/v1.0/admin/exchange/mailboxes/{id}", self.base_url)
    }

    fn on_mailbox<R>(&self, id: &str, f: impl FnOnce(&mut Tenant, &mut Mailbox) -> R) -> Option<R> {
        let idx = self.mailbox_by_id(id)?;
        let mut t = lock(&self.tenant);
        let mut mbx = t.mailboxes.remove(&idx)?;
        let r = f(&mut t, &mut mbx);
        t.mailboxes.insert(idx, mbx);
        Some(r)
    }

    /// `GET /users/{id}/settings/exchange`.
    pub(crate) fn exchange_settings(&self, user: &str) -> Resp {
        let t = lock(&self.tenant);
        let Some(idx) = t.find_user(user) else {
            return item_not_found();
        };
        Resp::ok(json!({
            "@odata.context": format!("{GRAPH_CTX}#users('{user}')/settings/exchange/$entity"),
            "primaryMailboxId": mailbox_id_of(&t.users[idx].id, &t.id),
        }))
    }

    fn folder_json(&self, mbx: &Mailbox, mailbox_id: &str, key: u64) -> Map<String, Value> {
        let f = &mbx.folders[&key];
        let children = mbx
            .folders
            .values()
            .filter(|c| c.parent == Some(key))
            .count();
        let items = mbx.messages.values().filter(|m| m.folder == key).count()
            + mbx.pim.items.values().filter(|i| i.folder == key).count();
        let mut o = Map::new();
        o.insert(
            "@odata.type".into(),
            json!("#microsoft.graph.mailboxFolder"),
        );
        o.insert("id".into(), json!(ews(&mbx.folder_id(key))));
        lock(&self.mailbox_folder_ids)
            .insert((usize::try_from(mbx.tag).unwrap_or(usize::MAX), key));
        o.insert("displayName".into(), json!(f.name));
        o.insert(
            "parentFolderId".into(),
            json!(ews(&f.parent.map_or_else(
                || mbx.folder_id(u64::MAX),
                |p| mbx.folder_id(p)
            ))),
        );
        o.insert(
            "parentMailboxUrl".into(),
            json!(self.mailbox_url(mailbox_id)),
        );
        o.insert("childFolderCount".into(), json!(children));
        o.insert("totalItemCount".into(), json!(items));
        o.insert("wellKnownName".into(), json!(f.well_known));
        o.insert(
            "type".into(),
            if f.class.is_empty() {
                Value::Null
            } else {
                json!(f.class)
            },
        );
        o
    }

    fn resolve(mbx: &Mailbox, folder: &str) -> Option<u64> {
        mbx.resolve_any_folder(folder)
            .or_else(|| mbx.resolve_any_folder(&rest(folder)))
    }

    /// `GET …/folders` (root's children, or every folder with `mailbox_folders_whole_tree`)
    /// and `GET …/folders/{id}/childFolders`.
    pub(crate) fn mbx_list_folders(
        &self,
        req: &Req,
        mailbox_id: &str,
        parent: Option<&str>,
    ) -> Resp {
        let top = match parse_top(req, 10, 1000) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let skip: usize = req.q("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
        let type_filter = match req.q("$filter") {
            None => None,
            Some(f) => {
                let parts: Vec<&str> = f.splitn(3, ' ').collect();
                match parts.as_slice() {
                    [p, "eq", v] if p.eq_ignore_ascii_case("type") => {
                        Some(v.trim_matches('\'').to_owned())
                    }
                    _ => {
                        return err(
                            StatusCode::BAD_REQUEST,
                            "ErrorInvalidUrlQueryFilter",
                            "The filter expression is not supported by this simulator.",
                        );
                    }
                }
            }
        };
        let whole_tree = self.cfg.mailbox_api.list_folders_whole_tree && parent.is_none();
        self.on_mailbox(mailbox_id, |_, mbx| {
            let parent_key = match parent {
                None => ROOT_FOLDER,
                Some(p) => match Self::resolve(mbx, p) {
                    Some(k) => k,
                    None => return item_not_found(),
                },
            };
            let all: Vec<u64> = mbx
                .folders
                .values()
                .filter(|f| f.parent.is_some())
                .filter(|f| whole_tree || f.parent == Some(parent_key))
                .filter(|f| type_filter.as_ref().is_none_or(|t| f.class.eq_ignore_ascii_case(t)))
                .map(|f| f.key)
                .collect();
            let mut value = Vec::new();
            for k in all.iter().skip(skip).take(top) {
                let full = self.folder_json(mbx, mailbox_id, *k);
                let keys: Vec<&str> = full.keys().map(String::as_str).collect();
                match crate::json::project(&full, req.q("$select"), &keys, &["@odata.type", "id"]) {
                    Ok(o) => value.push(Value::Object(o)),
                    Err(n) => return bad_select(&n, "mailboxFolder"),
                }
            }
            let mut body = json!({
                "@odata.context": format!("{GRAPH_CTX}#admin/exchange/mailboxes/{mailbox_id}/folders"),
                "value": value,
            });
            if skip + top < all.len() {
                body["@odata.nextLink"] = json!(next_link(&self.base_url, req, "$skip", &(skip + top).to_string()));
            }
            Resp::ok(body)
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn mbx_get_folder(&self, req: &Req, mailbox_id: &str, folder: &str) -> Resp {
        self.on_mailbox(mailbox_id, |_, mbx| {
            let Some(k) = Self::resolve(mbx, folder) else {
                return item_not_found();
            };
            let full = self.folder_json(mbx, mailbox_id, k);
            let keys: Vec<&str> = full.keys().map(String::as_str).collect();
            match crate::json::project(&full, req.q("$select"), &keys, &["@odata.type", "id"]) {
                Ok(mut o) => {
                    o.insert(
                        "@odata.context".into(),
                        json!(format!(
                            "{GRAPH_CTX}#admin/exchange/mailboxes('{mailbox_id}')/folders/$entity"
                        )),
                    );
                    Resp::ok(Value::Object(o))
                }
                Err(n) => bad_select(&n, "mailboxFolder"),
            }
        })
        .unwrap_or_else(item_not_found)
    }

    /// `POST …/folders` or `…/folders/{id}/childFolders` (api/mailbox-post-folders.md):
    /// `displayName` and `type` are required.
    pub(crate) fn mbx_create_folder(
        &self,
        req: &Req,
        mailbox_id: &str,
        parent: Option<&str>,
    ) -> Resp {
        let v = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        let (Some(name), Some(class)) = (
            v["displayName"].as_str().filter(|s| !s.trim().is_empty()),
            v["type"].as_str().filter(|s| !s.trim().is_empty()),
        ) else {
            return err(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                "The displayName and type properties are required.",
            );
        };
        let exists_status =
            StatusCode::from_u16(self.cfg.folder_exists_status).unwrap_or(StatusCode::BAD_REQUEST);
        self.on_mailbox(mailbox_id, |_, mbx| {
            let pk = match parent {
                None => ROOT_FOLDER,
                Some(p) => match Self::resolve(mbx, p) {
                    Some(k) => k,
                    None => return item_not_found(),
                },
            };
            if mbx
                .folders
                .values()
                .any(|f| f.parent == Some(pk) && f.name.eq_ignore_ascii_case(name))
            {
                return err(
                    exists_status,
                    "ErrorFolderExists",
                    "A folder with the specified name already exists.",
                );
            }
            let key = mbx.add_folder_of(class, pk, name, None, false);
            let mut o = self.folder_json(mbx, mailbox_id, key);
            o.insert(
                "@odata.context".into(),
                json!(format!(
                    "{GRAPH_CTX}#admin/exchange/mailboxes('{mailbox_id}')/folders/$entity"
                )),
            );
            Resp::json(StatusCode::CREATED, Value::Object(o))
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn mbx_update_folder(&self, req: &Req, mailbox_id: &str, folder: &str) -> Resp {
        let v = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        self.on_mailbox(mailbox_id, |_, mbx| {
            let Some(k) = Self::resolve(mbx, folder) else {
                return item_not_found();
            };
            if let Some(name) = v["displayName"].as_str() {
                mbx.rename_folder(k, name);
            }
            Resp::ok(Value::Object(self.folder_json(mbx, mailbox_id, k)))
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn mbx_delete_folder(&self, mailbox_id: &str, folder: &str) -> Resp {
        self.on_mailbox(mailbox_id, |_, mbx| {
            let Some(k) = Self::resolve(mbx, folder) else {
                return item_not_found();
            };
            if mbx.folders[&k].well_known.is_some() {
                return err(
                    StatusCode::FORBIDDEN,
                    "ErrorDeleteDistinguishedFolder",
                    "Distinguished folders cannot be deleted.",
                );
            }
            mbx.delete_folder(k);
            Resp::empty(StatusCode::NO_CONTENT)
        })
        .unwrap_or_else(item_not_found)
    }

    /// `GET …/folders/delta` and `…/folders/{id}/childFolders/delta`: every folder of the
    /// tree (or subtree), all classes, hidden ones included; `@removed` for deletions.
    pub(crate) fn mbx_folder_delta(
        &self,
        req: &Req,
        mailbox_id: &str,
        under: Option<&str>,
    ) -> Resp {
        let default_ps = self.cfg.delta_default_page_size.max(1);
        let max_ps = self.cfg.delta_max_page_size.max(1);
        self.on_mailbox(mailbox_id, |_, mbx| {
            let root = match under {
                None => ROOT_FOLDER,
                Some(f) => match Self::resolve(mbx, f) {
                    Some(k) => k,
                    None => return item_not_found(),
                },
            };
            let tok = match DeltaState::from_req(req, mbx, root) {
                Ok(t) => t,
                Err(e) => return e,
            };
            let below = |mut parent: Option<u64>| {
                while let Some(p) = parent {
                    if p == root {
                        return true;
                    }
                    parent = mbx.folders.get(&p).and_then(|f| f.parent);
                }
                false
            };
            let mut list: Vec<(u64, bool)> = mbx
                .folders
                .values()
                .filter(|f| below(f.parent) && f.seq > tok.s && f.seq <= tok.u)
                .map(|f| (f.key, true))
                .collect();
            if tok.s > 0 {
                list.extend(
                    mbx.folder_tombstones
                        .iter()
                        .filter(|x| x.seq > tok.s && x.seq <= tok.u && x.created_seq <= tok.s)
                        .filter(|x| x.parent.is_none_or(|p| below(Some(p)) || !mbx.folders.contains_key(&p)))
                        .map(|x| (x.key, false)),
                );
            }
            list.sort_unstable();
            let remaining: Vec<(u64, bool)> = list.into_iter().filter(|e| tok.a.is_none_or(|a| e.0 > a)).collect();
            let ps = req.prefer_max_page_size().unwrap_or(default_ps).clamp(1, max_ps);
            let mut value = Vec::new();
            for (k, live) in remaining.iter().take(ps) {
                if *live {
                    let full = self.folder_json(mbx, mailbox_id, *k);
                    let keys: Vec<&str> = full.keys().map(String::as_str).collect();
                    match crate::json::project(&full, tok.sel.as_deref(), &keys, &["@odata.type", "id"]) {
                        Ok(o) => value.push(Value::Object(o)),
                        Err(n) => return bad_select(&n, "mailboxFolder"),
                    }
                } else {
                    value.push(json!({"@odata.type": "#microsoft.graph.mailboxFolder", "id": ews(&mbx.folder_id(*k)), "@removed": {"reason": "deleted"}}));
                }
            }
            let base = match under {
                None => format!("{}/folders/delta", self.mailbox_url(mailbox_id)),
                Some(_) => format!("{}/folders/{}/childFolders/delta", self.mailbox_url(mailbox_id), ews(&mbx.folder_id(root))),
            };
            tok.finish(remaining.len() > ps, remaining.get(ps.saturating_sub(1)).map(|e| e.0), &base, &value, "Collection(mailboxFolder)")
        })
        .unwrap_or_else(item_not_found)
    }

    /// `GET …/folders/{id}/items`.
    pub(crate) fn mbx_list_items(&self, req: &Req, mailbox_id: &str, folder: &str) -> Resp {
        let top = match parse_top(req, 10, 1000) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let skip: usize = req.q("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
        self.on_mailbox(mailbox_id, |_, mbx| {
            let Some(k) = Self::resolve(mbx, folder) else { return item_not_found() };
            let all = entries(mbx, k);
            let mut value = Vec::new();
            for e in all.iter().skip(skip).take(top) {
                let full = entry_json(mbx, e);
                let keys: Vec<&str> = full.keys().map(String::as_str).collect();
                match crate::json::project(&full, req.q("$select"), &keys, &["@odata.type", "@odata.etag", "id"]) {
                    Ok(o) => value.push(Value::Object(o)),
                    Err(n) => return bad_select(&n, "mailboxItem"),
                }
            }
            let mut body = json!({
                "@odata.context": format!("{GRAPH_CTX}#admin/exchange/mailboxes/{mailbox_id}/folders('{folder}')/items"),
                "value": value,
            });
            if skip + top < all.len() {
                body["@odata.nextLink"] = json!(next_link(&self.base_url, req, "$skip", &(skip + top).to_string()));
            }
            Resp::ok(body)
        })
        .unwrap_or_else(item_not_found)
    }

    /// A mailboxItem id (EWS or REST form) of a message or another item. A message's
    /// immutable id is not one unless `accepts_immutable_ids` says so.
    fn resolve_entry(&self, mbx: &Mailbox, id: &str) -> Option<u64> {
        let r = rest(id);
        if Mailbox::is_immutable_message_id(&r) && !self.cfg.mailbox_api.accepts_immutable_ids {
            return None;
        }
        mbx.resolve_message(&r).or_else(|| mbx.resolve_item(&r))
    }

    pub(crate) fn mbx_get_item(
        &self,
        req: &Req,
        mailbox_id: &str,
        folder: &str,
        item: &str,
    ) -> Resp {
        self.on_mailbox(mailbox_id, |_, mbx| {
            let Some(fk) = Self::resolve(mbx, folder) else { return item_not_found() };
            let Some(k) = self.resolve_entry(mbx, item) else { return item_not_found() };
            let Some(e) = entries(mbx, fk).into_iter().find(|e| e.key == k) else { return item_not_found() };
            let full = entry_json(mbx, &e);
            let keys: Vec<&str> = full.keys().map(String::as_str).collect();
            match crate::json::project(&full, req.q("$select"), &keys, &["@odata.type", "@odata.etag", "id"]) {
                Ok(mut o) => {
                    o.insert("@odata.context".into(), json!(format!("{GRAPH_CTX}#admin/exchange/mailboxes('{mailbox_id}')/folders('{folder}')/items/$entity")));
                    Resp::ok(Value::Object(o))
                }
                Err(n) => bad_select(&n, "mailboxItem"),
            }
        })
        .unwrap_or_else(item_not_found)
    }

    /// `DELETE …/folders/{id}/items/{id}` (api/mailboxfolder-delete-items.md).
    pub(crate) fn mbx_delete_item(&self, mailbox_id: &str, folder: &str, item: &str) -> Resp {
        self.on_mailbox(mailbox_id, |_, mbx| {
            let Some(fk) = Self::resolve(mbx, folder) else {
                return item_not_found();
            };
            let Some(k) = self.resolve_entry(mbx, item) else {
                return item_not_found();
            };
            if mbx.messages.get(&k).is_some_and(|m| m.folder == fk) {
                mbx.remove_message(k);
            } else if mbx.pim.items.get(&k).is_some_and(|i| i.folder == fk) {
                mbx.remove_item(k);
            } else {
                return item_not_found();
            }
            Resp::empty(StatusCode::NO_CONTENT)
        })
        .unwrap_or_else(item_not_found)
    }

    /// `GET …/folders/{id}/items/delta` (api/mailboxitem-delta.md): per folder, like message
    /// delta; `$filter=receivedDateTime ge|gt …` limits messages.
    pub(crate) fn mbx_item_delta(&self, req: &Req, mailbox_id: &str, folder: &str) -> Resp {
        let default_ps = self.cfg.delta_default_page_size.max(1);
        let max_ps = self.cfg.delta_max_page_size.max(1);
        self.on_mailbox(mailbox_id, |_, mbx| {
            let Some(fk) = Self::resolve(mbx, folder) else { return item_not_found() };
            let tok = match DeltaState::from_req(req, mbx, fk) {
                Ok(t) => t,
                Err(e) => return e,
            };
            if !mbx.folders.contains_key(&tok.f) {
                return err(StatusCode::NOT_FOUND, "ErrorSyncFolderNotFound", "The folder being synchronized no longer exists.");
            }
            let after = tok.filter.as_deref().and_then(parse_received_filter);
            let seqs: std::collections::HashMap<u64, (u64, u64)> = mbx
                .messages
                .values()
                .filter(|m| m.folder == tok.f)
                .map(|m| (m.key, (m.seq, m.added_seq)))
                .chain(mbx.pim.items.values().filter(|i| i.folder == tok.f).map(|i| (i.key, (i.seq, i.added_seq))))
                .collect();
            let mut list: Vec<(u64, bool)> = entries(mbx, tok.f)
                .into_iter()
                .filter(|e| seqs.get(&e.key).is_some_and(|(s, _)| *s > tok.s && *s <= tok.u))
                .filter(|e| match (&after, e.received) {
                    (Some((at, inclusive)), Some(r)) => if *inclusive { r >= *at } else { r > *at },
                    _ => true,
                })
                .map(|e| (e.key, true))
                .collect();
            if tok.s > 0 {
                list.extend(
                    mbx.tombstones
                        .iter()
                        .filter(|x| x.folder == tok.f && x.seq > tok.s && x.seq <= tok.u && x.added_seq <= tok.s)
                        .map(|x| (x.key, false)),
                );
            }
            list.sort_unstable();
            list.dedup_by_key(|e| e.0);
            let remaining: Vec<(u64, bool)> = list.into_iter().filter(|e| tok.a.is_none_or(|a| e.0 > a)).collect();
            let ps = req
                .prefer_max_page_size()
                .or(tok.ps)
                .unwrap_or(default_ps)
                .clamp(1, max_ps);
            let all = entries(mbx, tok.f);
            let mut value = Vec::new();
            for (k, live) in remaining.iter().take(ps) {
                if let Some(e) = all.iter().find(|e| e.key == *k).filter(|_| *live) {
                    let full = entry_json(mbx, e);
                    let keys: Vec<&str> = full.keys().map(String::as_str).collect();
                    match crate::json::project(&full, tok.sel.as_deref(), &keys, &["@odata.type", "@odata.etag", "id"]) {
                        Ok(o) => value.push(Value::Object(o)),
                        Err(n) => return bad_select(&n, "mailboxItem"),
                    }
                } else {
                    // A removed message's id is the one it had in this folder.
                    let id = mbx
                        .tombstones
                        .iter()
                        .rev()
                        .find(|t| t.key == *k && t.folder == tok.f)
                        .map_or_else(|| ews(&mbx.item_id(*k)), |t| {
                            ews(&Mailbox::encode_message_id(mbx.tag, t.key, t.location_gen, false))
                        });
                    value.push(json!({"@odata.type": "#microsoft.graph.mailboxItem", "id": id, "@removed": {"reason": "deleted"}}));
                }
            }
            let base = format!("{}/folders/{}/items/delta", self.mailbox_url(mailbox_id), ews(&mbx.folder_id(tok.f)));
            tok.finish(remaining.len() > ps, remaining.get(ps.saturating_sub(1)).map(|e| e.0), &base, &value, "Collection(mailboxItem)")
        })
        .unwrap_or_else(item_not_found)
    }

    /// `POST …/exportItems` (api/mailbox-exportitems.md): at most 20 ids of this mailbox.
    pub(crate) fn mbx_export(&self, req: &Req, mailbox_id: &str) -> Resp {
        let v = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        let Some(ids) = v["itemIds"].as_array() else {
            return err(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                "The itemIds parameter is required.",
            );
        };
        let max = self.cfg.limits.export_max_items;
        if ids.is_empty() || ids.len() > max {
            return err(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                &format!(
                    "The itemIds collection must contain between 1 and {max} item identifiers."
                ),
            );
        }
        let ids: Vec<String> = ids
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect();
        self.on_mailbox(mailbox_id, |_, mbx| {
            let value: Vec<Value> = ids
                .iter()
                .map(|id| {
                    let found = self.resolve_entry(mbx, id);
                    match found {
                        Some(k) if mbx.messages.contains_key(&k) => {
                            let m = &mbx.messages[&k];
                            json!({"itemId": id, "changeKey": mbx.change_key(m), "data": STANDARD.encode(stream::export_message(m))})
                        }
                        Some(k) => {
                            let i = &mbx.pim.items[&k];
                            json!({"itemId": id, "changeKey": mbx.item_change_key(i), "data": STANDARD.encode(stream::export_item(i))})
                        }
                        None => json!({"itemId": id, "error": {"code": "ErrorItemNotFound", "message": "The specified object was not found in the store."}}),
                    }
                })
                .collect();
            Resp::ok(json!({"@odata.context": format!("{GRAPH_CTX}#Collection(microsoft.graph.exportItemResponse)"), "value": value}))
        })
        .unwrap_or_else(item_not_found)
    }

    /// `POST …/createImportSession` (api/mailbox-createimportsession.md: 200 and a
    /// mailboxItemImportSession).
    pub(crate) fn mbx_create_import_session(&self, mailbox_id: &str) -> Resp {
        let Some(idx) = self.mailbox_by_id(mailbox_id) else {
            return item_not_found();
        };
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let lifetime = chrono::Duration::from_std(self.cfg.mailbox_api.import_session_lifetime)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        let expires = Utc::now() + lifetime;
        lock(&self.imports).insert(
            token.clone(),
            ImportSession {
                mailbox: idx,
                mailbox_id: mailbox_id.to_owned(),
                expires,
            },
        );
        Resp::ok(json!({
            "@odata.context": format!("{GRAPH_CTX}#microsoft.graph.mailboxItemImportSession"),
            "importUrl": format!("{}/api/gv1.0/Mailboxes('{mailbox_id}')/importItem?authtoken={token}", self.base_url),
            "expirationDateTime": format!("{}Z", crate::items::graph_local(expires.naive_utc())),
        }))
    }

    /// `POST {importUrl}` (concepts/import-exchange-mailbox-item.md). Pre-authenticated:
    /// the token in the URL is the credential and an Authorization header is refused.
    /// Throttled and faulted like any call on the target mailbox.
    pub(crate) async fn import_item(
        self: &Arc<Self>,
        mailbox_segment: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Resp {
        if let Some(r) = self.inject_faults().await {
            return r;
        }
        let unauthorized =
            |msg: &str| err(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", msg);
        if headers.contains_key("authorization") {
            return unauthorized(
                "The import URL is pre-authenticated; don't send an Authorization header with it.",
            );
        }
        let token = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case("authtoken"))
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let session = lock(&self.imports)
            .get(&token)
            .map(|s| (s.mailbox, s.mailbox_id.clone(), s.expires));
        let Some((idx, mailbox_id, expires)) = session else {
            return unauthorized("The import session token is not valid.");
        };
        if Utc::now() >= expires {
            lock(&self.imports).remove(&token);
            return unauthorized("The import session has expired; create a new import session.");
        }
        let segment = crate::http::decode_segment(mailbox_segment);
        if !segment.contains(&mailbox_id) {
            return unauthorized(
                "The import URL was changed; use it as returned by createImportSession.",
            );
        }
        if body.len() > self.cfg.limits.max_request_bytes {
            return err(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The maximum request length supported is 4MB.",
            );
        }
        let _guard = match self.admit(idx, body.len() as u64) {
            Ok(g) => g,
            Err(t) => return crate::server::throttled(t, self.cfg.limits.concurrency_status),
        };
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return err(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                "The request body is not valid JSON.",
            );
        };
        let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(folder), Some(mode), Some(data)) = (get("FolderId"), get("Mode"), get("Data"))
        else {
            return err(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                "FolderId, Mode and Data are required.",
            );
        };
        // "Use the **id** property returned by List folders as the folder identifier for
        // mailbox import and export operations" (resources/mailbox-import-export-api-overview.md):
        // this API's id form (standard base64, padded) — not a `mailFolders` id nor a
        // well-known name [the error code is not documented].
        let malformed = || {
            err(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidIdMalformed",
                "FolderId must be the id of a mailboxFolder as List folders returns it.",
            )
        };
        if ews(&rest(&folder)) != folder {
            return malformed();
        }
        let (item_id, change_key) = (get("ItemId"), get("ChangeKey"));
        let update = match mode.to_ascii_lowercase().as_str() {
            "create" if item_id.is_some() || change_key.is_some() => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidRequest",
                    "ItemId and ChangeKey are not allowed in create mode.",
                );
            }
            "create" => false,
            "update" if item_id.is_none() || change_key.is_none() => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidRequest",
                    "ItemId and ChangeKey are required in update mode.",
                );
            }
            "update" => true,
            _ => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidRequest",
                    "Mode must be create or update.",
                );
            }
        };
        let Some(imported) = STANDARD
            .decode(data.trim())
            .ok()
            .and_then(|d| stream::import(&d))
        else {
            return err(
                StatusCode::BAD_REQUEST,
                "ErrorCorruptData",
                "The Data value is not an exported item.",
            );
        };
        let now = Utc::now();
        let mut t = lock(&self.tenant);
        let Some(mbx) = t.mailboxes.get_mut(&idx) else {
            return item_not_found();
        };
        let Some(fk) = Self::resolve(mbx, &folder) else {
            return item_not_found();
        };
        // The simulator's two id forms coincide (same bytes, and its ids need no `+` or
        // `/`), so a `mailFolders` id cannot be told by its text: a folder id counts as a
        // mailboxFolder id once this API's folder endpoints have returned it.
        if !lock(&self.mailbox_folder_ids).contains(&(idx, fk)) {
            return malformed();
        }
        let key = if update {
            let target = item_id.as_deref().and_then(|i| self.resolve_entry(mbx, i));
            let current = target.and_then(|k| {
                mbx.messages
                    .get(&k)
                    .filter(|m| m.folder == fk)
                    .map(|m| mbx.change_key(m))
                    .or_else(|| {
                        mbx.pim
                            .items
                            .get(&k)
                            .filter(|i| i.folder == fk)
                            .map(|i| mbx.item_change_key(i))
                    })
            });
            let (Some(k), Some(ck)) = (target, current) else {
                return err(
                    StatusCode::NOT_FOUND,
                    "ErrorItemNotFound",
                    "No item with this ItemId in the folder.",
                );
            };
            if change_key.as_deref() != Some(ck.as_str()) {
                return err(
                    StatusCode::CONFLICT,
                    "ErrorIrresolvableConflict",
                    "The ChangeKey doesn't match the item's current version.",
                );
            }
            match imported {
                Imported::Message(m) => {
                    let Some(cur) = mbx.messages.get_mut(&k) else {
                        return err(
                            StatusCode::BAD_REQUEST,
                            "ErrorInvalidRequest",
                            "The Data is a message; the item is not.",
                        );
                    };
                    cur.content = m.content;
                    cur.is_read = m.is_read;
                    cur.is_draft = m.is_draft;
                    cur.flag_status = m.flag_status;
                    cur.categories = m.categories;
                    cur.received = m.received;
                    cur.sent = m.sent;
                    cur.ext_props = m.ext_props;
                    mbx.touch_message(k, now);
                }
                Imported::Item(i) => {
                    let Some(cur) = mbx.pim.items.get_mut(&k) else {
                        return err(
                            StatusCode::BAD_REQUEST,
                            "ErrorInvalidRequest",
                            "The Data is not a message; the item is one.",
                        );
                    };
                    cur.class = i.class;
                    cur.categories = i.categories;
                    cur.props = i.props;
                    cur.attachments = i.attachments;
                    cur.photo = i.photo;
                    cur.occurrences = i.occurrences;
                    mbx.touch_item(k, now);
                }
            }
            k
        } else {
            match imported {
                Imported::Message(mut m) => {
                    let key = mbx.alloc_key();
                    let seq = mbx.bump();
                    m.key = key;
                    m.folder = fk;
                    m.seq = seq;
                    m.added_seq = seq;
                    mbx.messages.insert(key, *m);
                    key
                }
                Imported::Item(mut i) => {
                    i.folder = fk;
                    mbx.add_item(*i)
                }
            }
        };
        let (id, ck) = match mbx.messages.get(&key) {
            Some(m) => (ews(&mbx.message_id(m, false)), mbx.change_key(m)),
            None => (
                ews(&mbx.item_id(key)),
                mbx.item_change_key(&mbx.pim.items[&key]),
            ),
        };
        Resp::ok(json!({
            "@odata.context": format!("{}/api/gv1.0/$metadata#microsoft.graph.importMailboxItemResponse", self.base_url),
            "itemId": id,
            "changeKey": ck,
        }))
    }
}

fn parse_received_filter(f: &str) -> Option<(DateTime<Utc>, bool)> {
    let parts: Vec<&str> = f.split_whitespace().collect();
    match parts.as_slice() {
        [p, op, v]
            if p.eq_ignore_ascii_case("receivedDateTime") && (*op == "ge" || *op == "gt") =>
        {
            DateTime::parse_from_rfc3339(v.trim_matches('\''))
                .ok()
                .map(|d| (d.with_timezone(&Utc), *op == "ge"))
        }
        _ => None,
    }
}

/// State carried in mailbox API delta links (opaque to clients).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DeltaState {
    /// Folder (items) or subtree root (folders).
    f: u64,
    s: u64,
    u: u64,
    a: Option<u64>,
    sel: Option<String>,
    filter: Option<String>,
    ps: Option<usize>,
    e: u32,
}

impl DeltaState {
    fn from_req(req: &Req, mbx: &Mailbox, folder: u64) -> Result<Self, Resp> {
        let invalid = || {
            err(
                StatusCode::BAD_REQUEST,
                "SyncStateInvalid",
                "The sync state is invalid or corrupt.",
            )
        };
        let decode = |s: &str| -> Option<DeltaState> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s.trim()).ok()?).ok()
        };
        let tok = if let Some(dt) = req.q("$deltatoken") {
            let mut d = decode(dt).ok_or_else(invalid)?;
            d.u = mbx.seq;
            d.a = None;
            d
        } else if let Some(st) = req.q("$skiptoken") {
            decode(st).ok_or_else(invalid)?
        } else {
            let filter = req.q("$filter").map(str::to_owned);
            if filter
                .as_deref()
                .is_some_and(|f| parse_received_filter(f).is_none())
            {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidUrlQueryFilter",
                    "Only receivedDateTime ge|gt filters are supported on delta.",
                ));
            }
            DeltaState {
                f: folder,
                s: 0,
                u: mbx.seq,
                a: None,
                sel: req.q("$select").map(str::to_owned),
                filter,
                ps: req.q("$top").and_then(|v| v.parse().ok()),
                e: mbx.delta_epoch,
            }
        };
        if tok.e != mbx.delta_epoch {
            return Err(err(
                StatusCode::GONE,
                "SyncStateNotFound",
                &format!(
                    "The sync state generation is not found; generation={};[highest={}].",
                    mbx.delta_epoch.saturating_sub(1),
                    mbx.delta_epoch
                ),
            ));
        }
        Ok(tok)
    }

    fn finish(
        mut self,
        more: bool,
        last: Option<u64>,
        base: &str,
        value: &[Value],
        ctx: &str,
    ) -> Resp {
        let mut body = json!({"@odata.context": format!("{GRAPH_CTX}#{ctx}"), "value": value});
        if more {
            self.a = last;
            let t = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self).unwrap_or_default());
            body["@odata.nextLink"] = json!(format!("{base}?$skiptoken={t}"));
        } else {
            self.s = self.u;
            self.u = 0;
            self.a = None;
            let t = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self).unwrap_or_default());
            body["@odata.deltaLink"] = json!(format!("{base}?$deltatoken={t}"));
        }
        Resp::ok(body)
    }
}
