//! Graph read handlers: users, folders, messages, delta, MIME, attachments.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::DeltaTopMode;
use crate::http::{Req, Resp, encode_query};
use crate::json::{self, MsgView};
use crate::model::{AttachmentKind, Mailbox, Message, ROOT_FOLDER, Tenant};
use crate::server::{Sim, lock};

const GRAPH_CTX: &str = "https://graph.microsoft.com/v1.0/$metadata";

pub(crate) fn bad_select(name: &str, ty: &str) -> Resp {
    Resp::error(
        StatusCode::BAD_REQUEST,
        "RequestBroker--ParseUri",
        &format!("Could not find a property named '{name}' on type 'microsoft.graph.{ty}'."),
    )
}

pub(crate) fn item_not_found() -> Resp {
    Resp::error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

pub(crate) fn parse_top(req: &Req, default: usize, max: usize) -> Result<usize, Resp> {
    match req.q("$top") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Resp::error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                &format!(
                    "Invalid page size specified: '{v}'. Must be between 1 and {max} inclusive."
                ),
            )),
        },
    }
}

/// The request URL with `$skip`/`$skiptoken` replaced, for `@odata.nextLink`.
pub(crate) fn next_link(base: &str, req: &Req, key: &str, value: &str) -> String {
    let mut q: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("$skip") && !k.eq_ignore_ascii_case("$skiptoken"))
        .cloned()
        .collect();
    q.push((key.to_owned(), value.to_owned()));
    format!("{base}/v1.0{}?{}", req.path, encode_query(&q))
}

/// State carried inside delta next/delta links (opaque to clients).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeltaToken {
    /// Folder key.
    f: u64,
    /// Changes after this sequence number are reported.
    s: u64,
    /// Round upper bound (0 in a delta token: computed when the next round starts).
    u: u64,
    /// Cursor: last (message key, location generation) returned in this round.
    a: Option<(u64, u32)>,
    /// Original `$select`.
    sel: Option<String>,
    /// Page size fixed by the original query (`$top` variant).
    ps: Option<usize>,
    /// Mailbox delta epoch.
    e: u32,
}

impl DeltaToken {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }
    fn decode(s: &str) -> Option<Self> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s.trim()).ok()?).ok()
    }
}

impl Sim {
    // ---------------------------------------------------------------- users

    pub(crate) fn list_users(&self, req: &Req) -> Resp {
        let t = lock(&self.tenant);
        let top = match parse_top(req, 100, 999) {
            Ok(n) => n,
            Err(e) => return e,
        };
        if let Some(sel) = req.q("$select") {
            for s in sel.split(',').map(str::trim) {
                if json::USER_NOT_ON_COLLECTION
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(s))
                {
                    return Resp::error(
                        StatusCode::NOT_IMPLEMENTED,
                        "NotImplemented",
                        &format!(
                            "This operation target is not yet supported: property '{s}' cannot be selected on a user collection."
                        ),
                    );
                }
            }
        }
        if req.q("$skip").is_some() {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "'$skip' is not supported by the service.",
            );
        }
        let filter = match req.q("$filter").map(parse_user_filter).transpose() {
            Ok(f) => f,
            Err(e) => return e,
        };
        let start = req
            .q("$skiptoken")
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        let mut items = Vec::new();
        let mut matched = 0usize;
        let mut more = false;
        for u in &t.users {
            let full = json::user_full(u);
            if let Some(f) = &filter
                && !f.iter().all(|c| c.matches(&full))
            {
                continue;
            }
            matched += 1;
            if matched <= start {
                continue;
            }
            if items.len() == top {
                more = true;
                break;
            }
            match json::project(&full, req.q("$select"), json::USER_DEFAULT, &["id"]) {
                Ok(o) => items.push(Value::Object(o)),
                Err(name) => return bad_select(&name, "user"),
            }
        }
        let mut body = json!({"@odata.context": format!("{GRAPH_CTX}#users"), "value": items});
        if more {
            body["@odata.nextLink"] = json!(next_link(
                &self.base_url,
                req,
                "$skiptoken",
                &URL_SAFE_NO_PAD.encode((start + top).to_string())
            ));
        }
        Resp::ok(body)
    }

    pub(crate) fn get_user(&self, req: &Req, user: &str) -> Resp {
        let t = lock(&self.tenant);
        let Some(idx) = t.find_user(user) else {
            return Resp::error(
                StatusCode::NOT_FOUND,
                "Request_ResourceNotFound",
                &format!(
                    "Resource '{user}' does not exist or one of its queried reference-property objects are not present."
                ),
            );
        };
        // mailboxSettings lives in Exchange: selecting it for a user without a mailbox
        // fails like every mail path does, rather than inventing a userPurpose.
        let wants_settings = req.q("$select").is_some_and(|s| {
            s.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("mailboxSettings"))
        });
        if wants_settings && !t.mailboxes.contains_key(&idx) {
            let status = StatusCode::from_u16(self.cfg.mailbox_not_enabled_status)
                .unwrap_or(StatusCode::NOT_FOUND);
            return Resp::error(
                status,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            );
        }
        match json::project(
            &json::user_full(&t.users[idx]),
            req.q("$select"),
            json::USER_DEFAULT,
            &["id"],
        ) {
            Ok(mut o) => {
                o.insert(
                    "@odata.context".into(),
                    json!(format!("{GRAPH_CTX}#users/$entity")),
                );
                // The whole mailboxSettings, as `GET …/mailboxSettings` returns it.
                if let Some(Value::Object(ms)) = o.get_mut("mailboxSettings")
                    && let Some(mbx) = t.mailboxes.get(&idx)
                {
                    for (k, v) in &mbx.pim.settings {
                        ms.insert(k.clone(), v.clone());
                    }
                }
                Resp::ok(Value::Object(o))
            }
            Err(name) => bad_select(&name, "user"),
        }
    }

    // ---------------------------------------------------------------- folders

    pub(crate) fn with_mailbox<R>(&self, user: &str, f: impl FnOnce(&mut Tenant, usize) -> R) -> R {
        let mut t = lock(&self.tenant);
        let idx = t.find_user(user).unwrap_or(usize::MAX);
        f(&mut t, idx)
    }

    pub(crate) fn list_folders(&self, req: &Req, user: &str, parent: Option<&str>) -> Resp {
        let top = match parse_top(req, 10, 1000) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let hidden = req
            .q("includeHiddenFolders")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let skip: usize = req.q("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
        let uid = self.with_mailbox(user, |t, idx| t.users.get(idx).map(|u| u.id.clone()));
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get(&idx) else {
                return item_not_found();
            };
            let parent_key = match parent {
                None => ROOT_FOLDER,
                Some(p) => match mbx.resolve_folder(p) {
                    Some(k) => k,
                    None => return item_not_found(),
                },
            };
            let all: Vec<u64> = mbx
                .folders
                .values()
                .filter(|f| {
                    f.parent == Some(parent_key)
                        && f.class == crate::model::class::MAIL
                        && (hidden || !f.hidden)
                })
                .map(|f| f.key)
                .collect();
            let page: Vec<Value> = all
                .iter()
                .skip(skip)
                .take(top)
                .map(|k| json::folder_json(mbx, *k))
                .collect();
            let ctx = match parent {
                None => format!(
                    "{GRAPH_CTX}#users('{}')/mailFolders",
                    uid.unwrap_or_default()
                ),
                Some(_) => format!(
                    "{GRAPH_CTX}#users('{}')/mailFolders('{}')/childFolders",
                    uid.unwrap_or_default(),
                    mbx.folder_id(parent_key)
                ),
            };
            let mut body = json!({"@odata.context": ctx, "value": page});
            if skip + top < all.len() {
                body["@odata.nextLink"] = json!(next_link(
                    &self.base_url,
                    req,
                    "$skip",
                    &(skip + top).to_string()
                ));
            }
            Resp::ok(body)
        })
    }

    pub(crate) fn get_folder(&self, user: &str, folder: &str) -> Resp {
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get(&idx) else {
                return item_not_found();
            };
            let Some(k) = mbx.resolve_folder(folder) else {
                return item_not_found();
            };
            let mut v = json::folder_json(mbx, k);
            v["@odata.context"] = json!(format!("{GRAPH_CTX}#users('{user}')/mailFolders/$entity"));
            Resp::ok(v)
        })
    }

    // ---------------------------------------------------------------- messages

    fn render_message(
        mbx: &Mailbox,
        m: &Message,
        req: &Req,
        view: MsgView,
        sel_override: Option<&str>,
    ) -> Result<Map<String, Value>, Resp> {
        let sel = sel_override.or(req.q("$select"));
        let wants_headers =
            sel.is_some_and(|s| s.to_ascii_lowercase().contains("internetmessageheaders"));
        let full = json::message_full(mbx, m, view, wants_headers);
        let mut o = json::project(&full, sel, json::MESSAGE_DEFAULT, &["@odata.etag", "id"])
            .map_err(|n| bad_select(&n, "message"))?;
        if let Some(expand) = req.q("$expand") {
            apply_expand(&mut o, mbx, m, expand, view);
        }
        Ok(o)
    }

    pub(crate) fn get_message(&self, req: &Req, user: &str, msg: &str, view: MsgView) -> Resp {
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get(&idx) else {
                return item_not_found();
            };
            let Some(key) = mbx.resolve_message(msg) else {
                return item_not_found();
            };
            let m = &mbx.messages[&key];
            match Self::render_message(mbx, m, req, view, None) {
                Ok(mut o) => {
                    o.insert(
                        "@odata.context".into(),
                        json!(format!("{GRAPH_CTX}#users('{user}')/messages/$entity")),
                    );
                    let mut r = Resp::ok(Value::Object(o));
                    if view.text_body {
                        r = r.with_header(
                            "preference-applied",
                            "outlook.body-content-type=\"text\"",
                        );
                    }
                    r
                }
                Err(e) => e,
            }
        })
    }

    pub(crate) fn list_messages(
        &self,
        req: &Req,
        user: &str,
        folder: Option<&str>,
        view: MsgView,
    ) -> Resp {
        let top = match parse_top(req, 10, 1000) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let skip: usize = req.q("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
        let filter = match req.q("$filter").map(parse_message_filter).transpose() {
            Ok(f) => f,
            Err(e) => return e,
        };
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get(&idx) else { return item_not_found() };
            let fkey = match folder {
                None => None,
                Some(f) => match mbx.resolve_folder(f) {
                    Some(k) => Some(k),
                    None => return item_not_found(),
                },
            };
            let mut all: Vec<&Message> = mbx
                .messages
                .values()
                .filter(|m| fkey.is_none_or(|k| m.folder == k))
                .filter(|m| filter.as_ref().is_none_or(|f| f.matches(m)))
                .collect();
            all.sort_by(|a, b| b.received.cmp(&a.received).then(b.key.cmp(&a.key)));
            let mut page = Vec::new();
            for m in all.iter().skip(skip).take(top) {
                match Self::render_message(mbx, m, req, view, None) {
                    Ok(o) => page.push(Value::Object(o)),
                    Err(e) => return e,
                }
            }
            let mut body = json!({"@odata.context": format!("{GRAPH_CTX}#users('{user}')/messages"), "value": page});
            if skip + top < all.len() {
                body["@odata.nextLink"] = json!(next_link(&self.base_url, req, "$skip", &(skip + top).to_string()));
            }
            Resp::ok(body)
        })
    }

    pub(crate) fn delta(&self, req: &Req, user: &str, folder: &str, view: MsgView) -> Resp {
        let default_ps = self.cfg.delta_default_page_size.max(1);
        let max_ps = self.cfg.delta_max_page_size.max(1);
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get(&idx) else { return item_not_found() };
            let gone = || {
                Resp::error(
                    StatusCode::GONE,
                    "SyncStateNotFound",
                    &format!("The sync state generation is not found; generation={};[highest={}].", mbx.delta_epoch.saturating_sub(1), mbx.delta_epoch),
                )
            };
            let invalid = || Resp::error(StatusCode::BAD_REQUEST, "SyncStateInvalid", "The sync state is invalid or corrupt.");
            let mut tok = if let Some(dt) = req.q("$deltatoken") {
                let Some(mut d) = DeltaToken::decode(dt) else { return invalid() };
                d.u = mbx.seq;
                d.a = None;
                d
            } else if let Some(st) = req.q("$skiptoken") {
                match DeltaToken::decode(st) {
                    Some(d) => d,
                    None => return invalid(),
                }
            } else {
                let Some(f) = mbx.resolve_folder(folder) else { return item_not_found() };
                let ps = match self.cfg.delta_top {
                    DeltaTopMode::PageSize => req.q("$top").and_then(|v| v.parse().ok()),
                    DeltaTopMode::Ignored => None,
                };
                DeltaToken { f, s: 0, u: mbx.seq, a: None, sel: req.q("$select").map(str::to_owned), ps, e: mbx.delta_epoch }
            };
            if tok.e != mbx.delta_epoch {
                return gone();
            }
            if !mbx.folders.contains_key(&tok.f) {
                return Resp::error(StatusCode::NOT_FOUND, "ErrorSyncFolderNotFound", "The folder being synchronized no longer exists.");
            }
            let ps = req.prefer_max_page_size().or(tok.ps).unwrap_or(default_ps).clamp(1, max_ps);
            // Entries of this round, ordered by (key, generation) so a cursor survives concurrent changes.
            let mut entries: Vec<((u64, u32), Entry)> = mbx
                .messages
                .values()
                .filter(|m| m.folder == tok.f && m.seq > tok.s && m.seq <= tok.u)
                .map(|m| ((m.key, m.location_gen), Entry::Live(m)))
                .collect();
            if tok.s > 0 {
                entries.extend(
                    mbx.tombstones
                        .iter()
                        .filter(|x| x.folder == tok.f && x.seq > tok.s && x.seq <= tok.u && x.added_seq <= tok.s)
                        .map(|x| ((x.key, x.location_gen), Entry::Removed(x.key, x.location_gen))),
                );
            }
            entries.sort_by_key(|e| e.0);
            let after = tok.a;
            let remaining: Vec<_> = entries.into_iter().filter(|e| after.is_none_or(|a| e.0 > a)).collect();
            let more = remaining.len() > ps;
            let mut value = Vec::new();
            let mut last = None;
            for (pos, entry) in remaining.iter().take(ps) {
                last = Some(*pos);
                match entry {
                    Entry::Live(m) => match Self::render_message(mbx, m, req, view, tok.sel.as_deref()) {
                        Ok(mut o) => {
                            let mut with_type = Map::new();
                            with_type.insert("@odata.type".into(), json!("#microsoft.graph.message"));
                            with_type.append(&mut o);
                            value.push(Value::Object(with_type));
                        }
                        Err(e) => return e,
                    },
                    Entry::Removed(key, generation) => value.push(json!({
                        "@odata.type": "#microsoft.graph.message",
                        "id": Mailbox::encode_message_id(mbx.tag, *key, *generation, view.immutable),
                        "@removed": {"reason": "deleted"},
                    })),
                }
            }
            let uid = t.users.get(idx).map(|u| u.id.clone()).unwrap_or_default();
            let link_base = format!("{}/v1.0/users/{uid}/mailFolders('{}')/messages/delta", self.base_url, mbx.folder_id(tok.f));
            let mut body = json!({"@odata.context": format!("{GRAPH_CTX}#Collection(message)"), "value": value});
            if more {
                tok.a = last;
                body["@odata.nextLink"] = json!(format!("{link_base}?$skiptoken={}", tok.encode()));
            } else {
                tok.s = tok.u;
                tok.u = 0;
                tok.a = None;
                body["@odata.deltaLink"] = json!(format!("{link_base}?$deltatoken={}", tok.encode()));
            }
            Resp::ok(body)
        })
    }

    pub(crate) fn get_mime(&self, user: &str, msg: &str) -> Resp {
        let found = self.with_mailbox(user, |t, idx| {
            let mbx = t.mailboxes.get(&idx)?;
            let m = &mbx.messages[&mbx.resolve_message(msg)?];
            Some((m.content.clone(), m.sent, m.received, m.broken_value))
        });
        let Some((content, sent, received, broken)) = found else {
            return item_not_found();
        };
        if broken {
            return Resp::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ErrorInternalServerError",
                "An internal server error occurred. The operation failed.",
            );
        }
        Resp::bytes("text/plain", crate::mime::render(&content, sent, received))
    }

    // ---------------------------------------------------------------- attachments

    pub(crate) fn list_attachments(&self, req: &Req, user: &str, msg: &str) -> Resp {
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get(&idx) else { return item_not_found() };
            let Some(key) = mbx.resolve_message(msg) else { return item_not_found() };
            let m = &mbx.messages[&key];
            let mut out = Vec::new();
            for (i, a) in m.content.attachments.iter().enumerate() {
                let full = json::attachment_json(mbx, m, i, a, true, false);
                let keys: Vec<&str> = full.keys().map(String::as_str).collect();
                match json::project(&full, req.q("$select"), &keys, &["@odata.type", "id"]) {
                    Ok(o) => out.push(Value::Object(o)),
                    Err(n) => return bad_select(&n, "attachment"),
                }
            }
            Resp::ok(json!({"@odata.context": format!("{GRAPH_CTX}#users('{user}')/messages('{msg}')/attachments"), "value": out}))
        })
    }

    pub(crate) fn get_attachment(&self, req: &Req, user: &str, msg: &str, att: &str) -> Resp {
        let expand_item = req
            .q("$expand")
            .is_some_and(|e| e.to_ascii_lowercase().contains("item"));
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get(&idx) else {
                return item_not_found();
            };
            let Some(key) = mbx.resolve_message(msg) else {
                return item_not_found();
            };
            let m = &mbx.messages[&key];
            let Some(i) = mbx.resolve_attachment(m, att) else {
                return item_not_found();
            };
            let full =
                json::attachment_json(mbx, m, i, &m.content.attachments[i], true, expand_item);
            let keys: Vec<&str> = full.keys().map(String::as_str).collect();
            match json::project(&full, req.q("$select"), &keys, &["@odata.type", "id"]) {
                Ok(mut o) => {
                    o.insert(
                        "@odata.context".into(),
                        json!(format!(
                            "{GRAPH_CTX}#users('{user}')/messages('{msg}')/attachments/$entity"
                        )),
                    );
                    Resp::ok(Value::Object(o))
                }
                Err(n) => bad_select(&n, "attachment"),
            }
        })
    }

    pub(crate) fn get_attachment_value(&self, user: &str, msg: &str, att: &str) -> Resp {
        let found = self.with_mailbox(user, |t, idx| {
            let mbx = t.mailboxes.get(&idx)?;
            let m = &mbx.messages[&mbx.resolve_message(msg)?];
            let i = mbx.resolve_attachment(m, att)?;
            Some(m.content.attachments[i].clone())
        });
        let Some(a) = found else {
            return item_not_found();
        };
        match a.kind {
            AttachmentKind::File(c) => Resp::bytes(
                a.content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
                c.bytes().to_vec(),
            ),
            AttachmentKind::Item(item) => Resp::bytes(
                "message/rfc822",
                crate::mime::render(&item.content, item.sent, item.received),
            ),
            AttachmentKind::Reference { .. } => Resp::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "ErrorInvalidRequest",
                "The raw content of a reference attachment is not available.",
            ),
        }
    }
}

/// One item of a delta round: a present message or a removal.
enum Entry<'a> {
    Live(&'a Message),
    Removed(u64, u32),
}

/// `$expand=attachments` and `$expand=singleValueExtendedProperties($filter=id eq '…')`.
fn apply_expand(
    o: &mut Map<String, Value>,
    mbx: &Mailbox,
    m: &Message,
    expand: &str,
    view: MsgView,
) {
    for part in split_top_level(expand) {
        let lower = part.to_ascii_lowercase();
        if lower.starts_with("attachments") && !view.basic_only {
            let v: Vec<Value> = m
                .content
                .attachments
                .iter()
                .enumerate()
                .map(|(i, a)| Value::Object(json::attachment_json(mbx, m, i, a, true, false)))
                .collect();
            o.insert("attachments".into(), Value::Array(v));
        } else if lower.starts_with("singlevalueextendedproperties") {
            let wanted: Vec<String> = quoted_after(part, "id eq");
            let props = ext_props_of(m);
            let hits: Vec<Value> = props
                .into_iter()
                .filter(|(id, _)| wanted.is_empty() || wanted.iter().any(|w| ext_id_eq(w, id)))
                .map(|(id, value)| json!({"id": id, "value": value}))
                .collect();
            if !hits.is_empty() {
                o.insert("singleValueExtendedProperties".into(), Value::Array(hits));
            }
        }
    }
}

/// Extended properties of a message: stored ones plus the MAPI properties Exchange derives
/// (message flags, delivery and submit time).
pub(crate) fn ext_props_of(m: &Message) -> Vec<(String, String)> {
    let mut flags = 0u32;
    if m.is_read {
        flags |= 0x01;
    }
    if m.is_draft {
        flags |= 0x08;
    }
    if m.content.attachments.iter().any(|a| !a.is_inline) {
        flags |= 0x10;
    }
    let mut v = vec![
        ("Integer 0xe07".to_owned(), flags.to_string()),
        ("SystemTime 0xe06".to_owned(), json::ts(m.received)),
        ("SystemTime 0x39".to_owned(), json::ts(m.sent)),
    ];
    v.extend(
        m.ext_props
            .iter()
            .filter(|(id, _)| !is_derived_prop(id))
            .cloned(),
    );
    v
}

fn normalize_ext_id(id: &str) -> String {
    let lower = id.trim().to_ascii_lowercase();
    // "Integer 0x0E07" and "Integer 0xe07" name the same tag.
    if let Some((ty, tag)) = lower.split_once(" 0x")
        && !tag.contains(' ')
    {
        let tag = tag.trim_start_matches('0');
        return format!("{ty} 0x{tag}");
    }
    lower
}

pub(crate) fn ext_id_eq(a: &str, b: &str) -> bool {
    normalize_ext_id(a) == normalize_ext_id(b)
}

pub(crate) fn is_derived_prop(id: &str) -> bool {
    ["Integer 0x0E07", "SystemTime 0x0E06", "SystemTime 0x0039"]
        .iter()
        .any(|d| ext_id_eq(d, id))
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

/// Every single-quoted literal that follows `marker` (OData quoting: `''` is a quote).
fn quoted_after(s: &str, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(marker) {
        let after = from + pos + marker.len();
        let rest = &s[after..];
        let Some(q) = rest.find('\'') else { break };
        let mut lit = String::new();
        let mut chars = rest[q + 1..].char_indices().peekable();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    lit.push('\'');
                    chars.next();
                    continue;
                }
                end = q + 1 + i + 1;
                break;
            }
            lit.push(c);
        }
        out.push(lit);
        from = after + end.min(rest.len());
        if from >= s.len() {
            break;
        }
    }
    out
}

/// Supported message `$filter`s: `singleValueExtendedProperties/Any(ep: ep/id eq '…' and
/// ep/value eq '…')`, `isRead eq true|false`, `receivedDateTime ge|gt …`.
#[derive(Debug)]
enum MessageFilter {
    ExtProp {
        id: String,
        value: Option<String>,
    },
    IsRead(bool),
    ReceivedAfter {
        at: chrono::DateTime<chrono::Utc>,
        inclusive: bool,
    },
}

impl MessageFilter {
    fn matches(&self, m: &Message) -> bool {
        match self {
            MessageFilter::ExtProp { id, value } => ext_props_of(m)
                .iter()
                .any(|(pid, pv)| ext_id_eq(pid, id) && value.as_ref().is_none_or(|v| v == pv)),
            MessageFilter::IsRead(b) => m.is_read == *b,
            MessageFilter::ReceivedAfter { at, inclusive } => {
                if *inclusive {
                    m.received >= *at
                } else {
                    m.received > *at
                }
            }
        }
    }
}

fn parse_message_filter(f: &str) -> Result<MessageFilter, Resp> {
    let lower = f.to_ascii_lowercase();
    if lower.starts_with("singlevalueextendedproperties/any(") {
        let ids = quoted_after(f, "/id eq");
        let values = quoted_after(f, "/value eq");
        if let Some(id) = ids.into_iter().next() {
            return Ok(MessageFilter::ExtProp {
                id,
                value: values.into_iter().next(),
            });
        }
    }
    let parts: Vec<&str> = f.split_whitespace().collect();
    match parts.as_slice() {
        [p, "eq", v] if p.eq_ignore_ascii_case("isRead") => {
            return Ok(MessageFilter::IsRead(v.eq_ignore_ascii_case("true")));
        }
        [p, op, v]
            if p.eq_ignore_ascii_case("receivedDateTime") && (*op == "ge" || *op == "gt") =>
        {
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(v.trim_matches('\'')) {
                return Ok(MessageFilter::ReceivedAfter {
                    at: at.with_timezone(&chrono::Utc),
                    inclusive: *op == "ge",
                });
            }
        }
        _ => {}
    }
    Err(Resp::error(
        StatusCode::BAD_REQUEST,
        "ErrorInvalidUrlQueryFilter",
        "The filter expression is not supported by this simulator.",
    ))
}

/// One clause of a `/users` `$filter` (joined with `and`).
#[derive(Debug)]
enum UserClause {
    Eq(String, Value),
    StartsWith(String, String),
}

impl UserClause {
    fn matches(&self, full: &Map<String, Value>) -> bool {
        let get = |p: &str| {
            full.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(p))
                .map_or(Value::Null, |(_, v)| v.clone())
        };
        match self {
            UserClause::Eq(p, v) => match (get(p), v) {
                (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
                (a, b) => a == *b,
            },
            UserClause::StartsWith(p, s) => get(p)
                .as_str()
                .is_some_and(|v| v.to_lowercase().starts_with(&s.to_lowercase())),
        }
    }
}

fn parse_user_filter(f: &str) -> Result<Vec<UserClause>, Resp> {
    let unsupported = || {
        Resp::error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "Unsupported Query.",
        )
    };
    let mut out = Vec::new();
    for clause in f.split(" and ") {
        let c = clause.trim();
        if let Some(inner) = c
            .strip_prefix("startswith(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (p, lit) = inner.split_once(',').ok_or_else(unsupported)?;
            out.push(UserClause::StartsWith(
                p.trim().to_owned(),
                lit.trim().trim_matches('\'').replace("''", "'"),
            ));
            continue;
        }
        let parts: Vec<&str> = c.splitn(3, ' ').collect();
        match parts.as_slice() {
            [p, "eq", v] => {
                let v = v.trim();
                let val = if v.starts_with('\'') {
                    Value::String(v.trim_matches('\'').replace("''", "'"))
                } else if v == "true" || v == "false" {
                    Value::Bool(v == "true")
                } else if v == "null" {
                    Value::Null
                } else {
                    return Err(unsupported());
                };
                out.push(UserClause::Eq((*p).to_owned(), val));
            }
            _ => return Err(unsupported()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_after_handles_doubled_quotes() {
        let v = quoted_after(
            "ep/id eq 'String {x} Name a''b' and ep/value eq 'v'",
            "/id eq",
        );
        assert_eq!(v, vec!["String {x} Name a'b".to_owned()]);
    }

    #[test]
    fn ext_ids_compare_by_tag_number() {
        assert!(ext_id_eq("Integer 0x0E07", "integer 0xe07"));
        assert!(!ext_id_eq("Integer 0x0E07", "Integer 0x0E08"));
    }
}
