//! `GET /users/{id}/mailFolders/delta` (api/mailfolder-delta.md; graph-api.md §4.4).
//!
//! Documented: a round of one or more calls that follows `@odata.nextLink` (`$skiptoken`)
//! to an `@odata.deltaLink` (`$deltatoken`); the first call's query options (`$select`)
//! are carried in the tokens; `Prefer: odata.maxpagesize` sets the page size; `id` is
//! always returned; the items are mailFolder objects; application permissions
//! Mail.ReadBasic.All, Mail.Read or Mail.ReadWrite. Deleted folders come back as
//! `{"id": …, "@removed": {"reason": "deleted"}}` like every delta (delta-query-overview).
//! What the page leaves open — the whole tree or the top level, hidden folders, whether a
//! content change reports its folder — is [`FolderDeltaMode`](crate::FolderDeltaMode).

use std::collections::HashMap;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::{Req, Resp};
use crate::json;
use crate::model::{Mailbox, ROOT_FOLDER, class};
use crate::server::Sim;

const GRAPH_CTX: &str = "https://graph.microsoft.com/v1.0/$metadata";

/// State inside folder delta links (opaque to clients).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FolderDeltaToken {
    /// Changes after this sequence number are reported.
    s: u64,
    /// Upper bound of the round (set when a round starts).
    u: u64,
    /// Cursor: the last folder key returned in this round.
    a: Option<u64>,
    /// The first call's `$select`.
    sel: Option<String>,
    /// Mailbox delta epoch (expired tokens get 410).
    e: u32,
}

impl FolderDeltaToken {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }
    fn decode(s: &str) -> Option<Self> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s.trim()).ok()?).ok()
    }
}

/// The sequence of a folder's last reportable change, per folder key, when content
/// changes count: its own changes, its messages' changes and removals, and its child
/// folders' creation and deletion.
fn content_seq(mbx: &Mailbox) -> HashMap<u64, u64> {
    let mut out: HashMap<u64, u64> = HashMap::new();
    let mut raise = |k: u64, seq: u64| {
        let e = out.entry(k).or_insert(0);
        *e = (*e).max(seq);
    };
    for f in mbx.folders.values() {
        raise(f.key, f.seq);
        if let Some(p) = f.parent {
            raise(p, f.created_seq);
        }
    }
    for m in mbx.messages.values() {
        raise(m.folder, m.seq);
    }
    for t in &mbx.tombstones {
        raise(t.folder, t.seq);
    }
    for t in &mbx.folder_tombstones {
        if let Some(p) = t.parent {
            raise(p, t.seq);
        }
    }
    out
}

impl Sim {
    pub(crate) fn folder_delta(&self, req: &Req, user: &str) -> Resp {
        let cfg_mode = self.cfg.folder_delta;
        let default_ps = self.cfg.delta_default_page_size.max(1);
        let max_ps = self.cfg.delta_max_page_size.max(1);
        self.with_mailbox(user, |t, idx| {
            let uid = t.users.get(idx).map(|u| u.id.clone()).unwrap_or_default();
            let Some(mbx) = t.mailboxes.get(&idx) else {
                return Resp::error(
                    StatusCode::NOT_FOUND,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            let invalid = || {
                Resp::error(
                    StatusCode::BAD_REQUEST,
                    "SyncStateInvalid",
                    "The sync state is invalid or corrupt.",
                )
            };
            let mut tok = if let Some(dt) = req.q("$deltatoken") {
                let Some(mut d) = FolderDeltaToken::decode(dt) else {
                    return invalid();
                };
                d.u = mbx.seq;
                d.a = None;
                d
            } else if let Some(st) = req.q("$skiptoken") {
                match FolderDeltaToken::decode(st) {
                    Some(d) => d,
                    None => return invalid(),
                }
            } else {
                FolderDeltaToken {
                    s: 0,
                    u: mbx.seq,
                    a: None,
                    sel: req.q("$select").map(str::to_owned),
                    e: mbx.delta_epoch,
                }
            };
            if tok.e != mbx.delta_epoch {
                return Resp::error(
                    StatusCode::GONE,
                    "SyncStateNotFound",
                    &format!(
                        "The sync state generation is not found; generation={};[highest={}].",
                        mbx.delta_epoch.saturating_sub(1),
                        mbx.delta_epoch
                    ),
                );
            }
            let ps = req
                .prefer_max_page_size()
                .unwrap_or(default_ps)
                .clamp(1, max_ps);
            // A folder is in scope when it is below the root (only directly, unless the
            // whole tree is reported) and neither it nor an ancestor is hidden (unless
            // hidden folders are reported).
            let visible = |mut parent: Option<u64>, hidden: bool, folder_class: &str| {
                if folder_class != class::MAIL {
                    return false;
                }
                if parent.is_none() || (!cfg_mode.whole_tree && parent != Some(ROOT_FOLDER)) {
                    return false;
                }
                if cfg_mode.include_hidden {
                    return true;
                }
                if hidden {
                    return false;
                }
                while let Some(p) = parent {
                    match mbx.folders.get(&p) {
                        Some(f) if f.hidden => return false,
                        Some(f) => parent = f.parent,
                        None => return true,
                    }
                }
                true
            };
            let changed = cfg_mode.content_changes.then(|| content_seq(mbx));
            let in_round = |seq: u64| seq > tok.s && seq <= tok.u;
            let mut entries: Vec<(u64, bool)> = mbx
                .folders
                .values()
                .filter(|f| visible(f.parent, f.hidden, &f.class))
                .filter(|f| {
                    let seq = changed
                        .as_ref()
                        .and_then(|c| c.get(&f.key).copied())
                        .unwrap_or(f.seq);
                    in_round(seq) && f.created_seq <= tok.u
                })
                .map(|f| (f.key, true))
                .collect();
            if tok.s > 0 {
                // A folder that changed during the round but is out of scope now (moved
                // below a hidden folder) is gone for this collection: reported removed like
                // an item moved out of a message delta's folder (delta-query-overview).
                entries.extend(
                    mbx.folders
                        .values()
                        .filter(|f| f.class == class::MAIL && f.parent.is_some())
                        .filter(|f| !visible(f.parent, f.hidden, &f.class))
                        .filter(|f| in_round(f.seq) && f.created_seq <= tok.s)
                        .map(|f| (f.key, false)),
                );
                entries.extend(
                    mbx.folder_tombstones
                        .iter()
                        .filter(|x| {
                            visible(x.parent, x.hidden, &x.class) && in_round(x.seq) && x.created_seq <= tok.s
                        })
                        .map(|x| (x.key, false)),
                );
            }
            entries.sort_unstable();
            entries.dedup_by_key(|e| e.0);
            let remaining: Vec<(u64, bool)> = entries
                .into_iter()
                .filter(|e| tok.a.is_none_or(|a| e.0 > a))
                .collect();
            let more = remaining.len() > ps;
            let mut value = Vec::new();
            for (key, live) in remaining.iter().take(ps) {
                if *live {
                    let full = json::folder_json(mbx, *key);
                    let Some(obj) = full.as_object() else {
                        continue;
                    };
                    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                    match json::project(obj, tok.sel.as_deref(), &keys, &["id"]) {
                        Ok(o) => value.push(Value::Object(o)),
                        Err(name) => {
                            return Resp::error(
                                StatusCode::BAD_REQUEST,
                                "RequestBroker--ParseUri",
                                &format!(
                                    "Could not find a property named '{name}' on type 'microsoft.graph.mailFolder'."
                                ),
                            );
                        }
                    }
                } else {
                    value.push(json!({"id": mbx.folder_id(*key), "@removed": {"reason": "deleted"}}));
                }
            }
            let link_base = format!("{}/v1.0/users/{uid}/mailFolders/delta", self.base_url);
            let mut body = json!({
                "@odata.context": format!("{GRAPH_CTX}#Collection(mailFolder)"),
                "value": value,
            });
            if more {
                tok.a = remaining.get(ps - 1).map(|e| e.0);
                body["@odata.nextLink"] =
                    json!(format!("{link_base}?$skiptoken={}", tok.encode()));
            } else {
                tok.s = tok.u;
                tok.u = 0;
                tok.a = None;
                body["@odata.deltaLink"] =
                    json!(format!("{link_base}?$deltatoken={}", tok.encode()));
            }
            Resp::ok(body)
        })
    }
}
