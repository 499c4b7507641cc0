//! Restore-side writes (folders, messages, attachments, upload sessions), `$batch` and the
//! usage report.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::graph::is_derived_prop;
use crate::http::{Req, Resp, RespBody};
use crate::json::{self, MsgView};
use crate::model::{
    Addr, Attachment, AttachmentKind, Body, Content, ItemMessage, Message, MessageContent,
    ROOT_FOLDER,
};
use crate::server::{Sim, lock, make_req};

const GRAPH_CTX: &str = "https://graph.microsoft.com/v1.0/$metadata";

/// An open attachment upload session (graph-api.md §8.4).
#[derive(Debug)]
pub(crate) struct UploadSession {
    mailbox: usize,
    message: u64,
    name: String,
    content_type: Option<String>,
    size: u64,
    is_inline: bool,
    content_id: Option<String>,
    data: Vec<u8>,
    expires: DateTime<Utc>,
}

fn item_not_found() -> Resp {
    Resp::error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn parse_addr(v: &Value) -> Option<Addr> {
    let e = v.get("emailAddress")?;
    Some(Addr {
        name: e["name"].as_str().unwrap_or_default().to_owned(),
        address: e["address"].as_str()?.to_owned(),
    })
}

fn parse_addrs(v: &Value) -> Vec<Addr> {
    v.as_array()
        .map(|a| a.iter().filter_map(parse_addr).collect())
        .unwrap_or_default()
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Parses a JSON attachment (file or item) as accepted by `POST …/attachments`.
pub(crate) fn parse_attachment(v: &Value, now: DateTime<Utc>) -> Result<Attachment, Resp> {
    let ty = v["@odata.type"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name = v["name"].as_str().unwrap_or("Untitled").to_owned();
    if ty.ends_with("fileattachment") {
        let bytes = STANDARD
            .decode(v["contentBytes"].as_str().unwrap_or_default())
            .map_err(|_| {
                Resp::error(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidRequest",
                    "The contentBytes value is not valid base64.",
                )
            })?;
        Ok(Attachment {
            name,
            content_type: Some(
                v["contentType"]
                    .as_str()
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
            ),
            kind: AttachmentKind::File(Content::Bytes(bytes.into())),
            is_inline: v["isInline"].as_bool().unwrap_or(false),
            content_id: v["contentId"].as_str().map(str::to_owned),
            last_modified: now,
        })
    } else if ty.ends_with("itemattachment") {
        let item = &v["item"];
        let content = content_from_json(item, "<item@attachment>".to_owned());
        let sent = item["sentDateTime"]
            .as_str()
            .and_then(parse_time)
            .unwrap_or(now);
        let received = item["receivedDateTime"]
            .as_str()
            .and_then(parse_time)
            .unwrap_or(now);
        Ok(Attachment {
            name,
            content_type: None,
            kind: AttachmentKind::Item(Arc::new(ItemMessage {
                content,
                sent,
                received,
            })),
            is_inline: false,
            content_id: None,
            last_modified: now,
        })
    } else {
        Err(Resp::error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "Unsupported attachment type.",
        ))
    }
}

fn content_from_json(v: &Value, default_id: String) -> MessageContent {
    let body = &v["body"];
    let html = body["contentType"]
        .as_str()
        .is_some_and(|c| c.eq_ignore_ascii_case("html"));
    MessageContent {
        subject: v["subject"].as_str().unwrap_or_default().to_owned(),
        from: v
            .get("from")
            .and_then(parse_addr)
            .or_else(|| v.get("sender").and_then(parse_addr)),
        to: parse_addrs(&v["toRecipients"]),
        cc: parse_addrs(&v["ccRecipients"]),
        bcc: parse_addrs(&v["bccRecipients"]),
        reply_to: parse_addrs(&v["replyTo"]),
        body: Body {
            html,
            content: body["content"].as_str().unwrap_or_default().into(),
        },
        internet_message_id: v["internetMessageId"]
            .as_str()
            .map_or(default_id, str::to_owned),
        in_reply_to: None,
        references: vec![],
        extra_headers: vec![],
        importance: match v["importance"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("high") => "high",
            Some("low") => "low",
            _ => "normal",
        },
        attachments: vec![],
        raw_mime: None,
    }
}

impl Sim {
    pub(crate) fn create_folder(&self, req: &Req, user: &str, parent: Option<&str>) -> Resp {
        let body = match req.json_body() {
            Ok(b) => b,
            Err(e) => return *e,
        };
        let Some(name) = body["displayName"]
            .as_str()
            .filter(|s| !s.trim().is_empty())
        else {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                "The displayName property is required.",
            );
        };
        let hidden = body["isHidden"].as_bool().unwrap_or(false);
        let exists_status =
            StatusCode::from_u16(self.cfg.folder_exists_status).unwrap_or(StatusCode::BAD_REQUEST);
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get_mut(&idx) else {
                return item_not_found();
            };
            let pk = match parent {
                None => ROOT_FOLDER,
                Some(p) => match mbx.resolve_folder(p) {
                    Some(k) => k,
                    None => return item_not_found(),
                },
            };
            if mbx
                .folders
                .values()
                .any(|f| f.parent == Some(pk) && f.name.eq_ignore_ascii_case(name))
            {
                return Resp::error(
                    exists_status,
                    "ErrorFolderExists",
                    "A folder with the specified name already exists.",
                );
            }
            let key = mbx.add_folder(pk, name, None, hidden);
            let mut v = json::folder_json(mbx, key);
            v["@odata.context"] = json!(format!("{GRAPH_CTX}#users('{user}')/mailFolders/$entity"));
            Resp::json(StatusCode::CREATED, v)
        })
    }

    pub(crate) fn delete_folder_req(&self, user: &str, folder: &str) -> Resp {
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get_mut(&idx) else {
                return item_not_found();
            };
            let Some(k) = mbx.resolve_folder(folder) else {
                return item_not_found();
            };
            if mbx.folders[&k].well_known.is_some() {
                return Resp::error(
                    StatusCode::FORBIDDEN,
                    "ErrorDeleteDistinguishedFolder",
                    "Distinguished folders cannot be deleted.",
                );
            }
            mbx.delete_folder(k);
            Resp::empty(StatusCode::NO_CONTENT)
        })
    }

    #[allow(clippy::many_single_char_names)] // Short names mirror the JSON fields they read.
    pub(crate) fn create_message(
        &self,
        req: &Req,
        user: &str,
        folder: Option<&str>,
        view: MsgView,
    ) -> Resp {
        let now = Utc::now();
        let ct = req
            .header("content-type")
            .unwrap_or("application/json")
            .to_ascii_lowercase();
        let (content, mime_date, props, is_read_field) = if ct.starts_with("text/plain") {
            let cleaned: Vec<u8> = req
                .body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let Ok(raw) = STANDARD.decode(&cleaned) else {
                return Resp::error(
                    StatusCode::BAD_REQUEST,
                    "ErrorMimeContentInvalidBase64String",
                    "Invalid base64 string for MIME content.",
                );
            };
            let parsed = crate::mimeparse::parse(&raw, now, &self.domain);
            (parsed.content, parsed.date, Vec::new(), None)
        } else {
            let v = match req.json_body() {
                Ok(v) => v,
                Err(e) => return *e,
            };
            let mut c = content_from_json(
                &v,
                format!(
                    "<{}@{}>",
                    uuid::Uuid::new_v4().simple(),
                    self.domain.to_ascii_uppercase()
                ),
            );
            if let Some(hs) = v["internetMessageHeaders"].as_array() {
                for h in hs {
                    let (n, val) = (
                        h["name"].as_str().unwrap_or_default(),
                        h["value"].as_str().unwrap_or_default(),
                    );
                    if !n.to_ascii_lowercase().starts_with("x-") {
                        return Resp::error(
                            StatusCode::BAD_REQUEST,
                            "InvalidInternetMessageHeader",
                            &format!(
                                "The internet message header name '{n}' should start with 'x-' or 'X-'."
                            ),
                        );
                    }
                    c.extra_headers.push((n.to_owned(), val.to_owned()));
                }
            }
            if let Some(atts) = v["attachments"].as_array() {
                for a in atts {
                    match parse_attachment(a, now) {
                        Ok(a) => c.attachments.push(a),
                        Err(e) => return e,
                    }
                }
            }
            let props: Vec<(String, String)> = v["singleValueExtendedProperties"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| {
                            Some((
                                p["id"].as_str()?.to_owned(),
                                p["value"].as_str()?.to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (c, None, props, v["isRead"].as_bool())
        };
        let find = |id: &str| {
            props
                .iter()
                .find(|(k, _)| crate::graph::ext_id_eq(k, id))
                .map(|(_, v)| v.clone())
        };
        let flags = find("Integer 0x0E07").and_then(|v| v.parse::<u32>().ok());
        let received = find("SystemTime 0x0E06")
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(now);
        let sent = find("SystemTime 0x0039")
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(if content.raw_mime.is_some() {
                mime_date.unwrap_or(now)
            } else {
                received
            });
        let (is_draft, is_read) = match flags {
            Some(f) => (f & 0x08 != 0, f & 0x01 != 0),
            None => (true, is_read_field.unwrap_or(true)),
        };
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get_mut(&idx) else {
                return item_not_found();
            };
            let fk = match folder {
                None => mbx.resolve_folder("drafts").unwrap_or(ROOT_FOLDER),
                Some(f) => match mbx.resolve_folder(f) {
                    Some(k) => k,
                    None => return item_not_found(),
                },
            };
            let key = mbx.alloc_key();
            let seq = mbx.bump();
            let m = Message {
                key,
                folder: fk,
                location_gen: 0,
                version: 0,
                seq,
                added_seq: seq,
                content: Arc::new(content),
                is_read,
                is_draft,
                flag_status: "notFlagged".into(),
                categories: vec![],
                received,
                sent,
                created: now,
                modified: now,
                ext_props: props
                    .into_iter()
                    .filter(|(k, _)| !is_derived_prop(k))
                    .collect(),
                broken_value: false,
            };
            let mut o = json::project(
                &json::message_full(mbx, &m, view, false),
                None,
                json::MESSAGE_DEFAULT,
                &["@odata.etag", "id"],
            )
            .unwrap_or_default();
            o.insert(
                "@odata.context".into(),
                json!(format!("{GRAPH_CTX}#users('{user}')/messages/$entity")),
            );
            mbx.messages.insert(key, m);
            Resp::json(StatusCode::CREATED, Value::Object(o))
        })
    }

    pub(crate) fn patch_message(&self, req: &Req, user: &str, msg: &str, view: MsgView) -> Resp {
        let v = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get_mut(&idx) else {
                return item_not_found();
            };
            let Some(key) = mbx.resolve_message(msg) else {
                return item_not_found();
            };
            let m = mbx
                .messages
                .get_mut(&key)
                .expect("invariant: resolved key exists");
            if let Some(b) = v["isRead"].as_bool() {
                m.is_read = b;
            }
            if let Some(c) = v["categories"].as_array() {
                m.categories = c
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect();
            }
            if let Some(f) = v["flag"]["flagStatus"].as_str() {
                f.clone_into(&mut m.flag_status);
            }
            if let Some(s) = v["subject"].as_str() {
                s.clone_into(&mut Arc::make_mut(&mut m.content).subject);
            }
            if let Some(props) = v["singleValueExtendedProperties"].as_array() {
                for p in props {
                    let (Some(id), Some(val)) = (p["id"].as_str(), p["value"].as_str()) else {
                        continue;
                    };
                    // PR_MESSAGE_FLAGS and friends are read-only after the first save.
                    if is_derived_prop(id) {
                        continue;
                    }
                    m.ext_props.retain(|(k, _)| !crate::graph::ext_id_eq(k, id));
                    m.ext_props.push((id.to_owned(), val.to_owned()));
                }
            }
            mbx.touch_message(key, Utc::now());
            let m = &mbx.messages[&key];
            let o = json::project(
                &json::message_full(mbx, m, view, false),
                None,
                json::MESSAGE_DEFAULT,
                &["@odata.etag", "id"],
            )
            .unwrap_or_default();
            Resp::ok(Value::Object(o))
        })
    }

    pub(crate) fn delete_message_req(&self, user: &str, msg: &str) -> Resp {
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get_mut(&idx) else {
                return item_not_found();
            };
            let Some(key) = mbx.resolve_message(msg) else {
                return item_not_found();
            };
            mbx.remove_message(key);
            Resp::empty(StatusCode::NO_CONTENT)
        })
    }

    pub(crate) fn move_message_req(&self, req: &Req, user: &str, msg: &str, view: MsgView) -> Resp {
        let v = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        let Some(dest) = v["destinationId"].as_str() else {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                "The destinationId property is required.",
            );
        };
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get_mut(&idx) else {
                return item_not_found();
            };
            let Some(key) = mbx.resolve_message(msg) else {
                return item_not_found();
            };
            let Some(fk) = mbx.resolve_folder(dest) else {
                return item_not_found();
            };
            mbx.move_message(key, fk, Utc::now());
            let m = &mbx.messages[&key];
            let o = json::project(
                &json::message_full(mbx, m, view, false),
                None,
                json::MESSAGE_DEFAULT,
                &["@odata.etag", "id"],
            )
            .unwrap_or_default();
            Resp::json(StatusCode::CREATED, Value::Object(o))
        })
    }

    pub(crate) fn create_attachment(&self, req: &Req, user: &str, msg: &str) -> Resp {
        let body = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        let now = Utc::now();
        let att = match parse_attachment(&body, now) {
            Ok(a) => a,
            Err(e) => return e,
        };
        self.with_mailbox(user, |t, idx| {
            let Some(mbx) = t.mailboxes.get_mut(&idx) else {
                return item_not_found();
            };
            let Some(key) = mbx.resolve_message(msg) else {
                return item_not_found();
            };
            let m = mbx
                .messages
                .get_mut(&key)
                .expect("invariant: resolved key exists");
            let c = Arc::make_mut(&mut m.content);
            c.attachments.push(att);
            let i = c.attachments.len() - 1;
            mbx.touch_message(key, now);
            let m = &mbx.messages[&key];
            let mut o = json::attachment_json(mbx, m, i, &m.content.attachments[i], true, false);
            o.insert(
                "@odata.context".into(),
                json!(format!(
                    "{GRAPH_CTX}#users('{user}')/messages('{msg}')/attachments/$entity"
                )),
            );
            Resp::json(StatusCode::CREATED, Value::Object(o))
        })
    }

    pub(crate) fn create_upload_session(&self, req: &Req, user: &str, msg: &str) -> Resp {
        let v = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        let item = &v["AttachmentItem"];
        let size = item["size"].as_u64().unwrap_or(0);
        let limits = &self.cfg.limits;
        if size < limits.upload_session_min_bytes {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                "Attachment size must be greater than the minimum size.",
            );
        }
        if size > limits.upload_session_max_bytes {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize",
                "Attachment size exceeds the maximum size.",
            );
        }
        let found = self.with_mailbox(user, |t, idx| {
            let mbx = t.mailboxes.get(&idx)?;
            let key = mbx.resolve_message(msg)?;
            Some((idx, key, t.users[idx].id.clone(), t.id.clone()))
        });
        let Some((idx, key, oid, tid)) = found else {
            return item_not_found();
        };
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let expires = Utc::now() + chrono::Duration::hours(6);
        lock(&self.uploads).insert(
            sid.clone(),
            UploadSession {
                mailbox: idx,
                message: key,
                name: item["name"].as_str().unwrap_or("attachment").to_owned(),
                content_type: item["contentType"].as_str().map(str::to_owned),
                size,
                is_inline: item["isInline"].as_bool().unwrap_or(false),
                content_id: item["contentId"].as_str().map(str::to_owned),
                data: Vec::new(),
                expires,
            },
        );
        let _ = (oid, tid);
        Resp::json(
            StatusCode::CREATED,
            json!({
                "@odata.context": format!("{GRAPH_CTX}#microsoft.graph.uploadSession"),
                "uploadUrl": format!("{}/_upload/{sid}?authtoken={}", self.base_url, uuid::Uuid::new_v4().simple()),
                "expirationDateTime": json::ts(expires),
                "nextExpectedRanges": ["0-"],
            }),
        )
    }

    /// `PUT`/`DELETE` on an upload URL (pre-authenticated; no bearer token needed).
    #[allow(clippy::many_single_char_names)] // Content-Range parts are conventionally s/e/t.
    pub(crate) fn upload_chunk(
        self: &Arc<Self>,
        method: &Method,
        sid: &str,
        headers: &HeaderMap,
        body: &axum::body::Bytes,
    ) -> Resp {
        if *method == Method::DELETE {
            return if lock(&self.uploads).remove(sid).is_some() {
                Resp::empty(StatusCode::NO_CONTENT)
            } else {
                item_not_found()
            };
        }
        if *method != Method::PUT {
            return Resp::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "ErrorInvalidRequest",
                "Only PUT and DELETE are supported on upload sessions.",
            );
        }
        if body.len() > self.cfg.limits.max_request_bytes {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The maximum request length supported is 4MB.",
            );
        }
        let Some(mailbox) = lock(&self.uploads).get(sid).map(|s| s.mailbox) else {
            return item_not_found();
        };
        let _guard = match self.admit(mailbox, body.len() as u64) {
            Ok(g) => g,
            Err(t) => {
                let (which, secs) = match t {
                    crate::limits::Throttle::Concurrency(s) => ("MailboxConcurrency", s),
                    crate::limits::Throttle::Requests(s) => ("Request", s),
                    crate::limits::Throttle::IncomingBytes(s) => ("IncomingBytes", s),
                };
                return Resp::bare_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ApplicationThrottled",
                    &format!("Application is over its {which} limit."),
                )
                .with_header("retry-after", secs.to_string());
            }
        };
        let range = headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range);
        let mut uploads = lock(&self.uploads);
        let Some(s) = uploads.get_mut(sid) else {
            return item_not_found();
        };
        let Some((start, end, total)) = range else {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "invalidRange",
                "The Content-Range header is missing or malformed.",
            );
        };
        if total != s.size
            || start != s.data.len() as u64
            || end < start
            || end - start + 1 != body.len() as u64
            || end >= total
        {
            return Resp::error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalidRange",
                &format!(
                    "The uploaded fragment does not match the expected range; next expected range is {}-.",
                    s.data.len()
                ),
            );
        }
        s.data.extend_from_slice(body);
        if (s.data.len() as u64) < s.size {
            return Resp::ok(json!({
                "@odata.context": "https://outlook.office.com/api/v2.0/$metadata#Users('sim')/Messages('sim')/AttachmentSessions/$entity",
                "ExpirationDateTime": json::ts(s.expires),
                "nextExpectedRanges": [s.data.len().to_string()],
            }));
        }
        let Some(s) = uploads.remove(sid) else {
            return item_not_found();
        };
        drop(uploads);
        let now = Utc::now();
        let mut t = lock(&self.tenant);
        let uid = t
            .users
            .get(s.mailbox)
            .map(|u| u.id.clone())
            .unwrap_or_default();
        let Some(mbx) = t.mailboxes.get_mut(&s.mailbox) else {
            return item_not_found();
        };
        let Some(m) = mbx.messages.get_mut(&s.message) else {
            return item_not_found();
        };
        let c = Arc::make_mut(&mut m.content);
        c.attachments.push(Attachment {
            name: s.name,
            content_type: Some(
                s.content_type
                    .unwrap_or_else(|| "application/octet-stream".into()),
            ),
            kind: AttachmentKind::File(Content::Bytes(s.data.into())),
            is_inline: s.is_inline,
            content_id: s.content_id,
            last_modified: now,
        });
        let i = c.attachments.len() - 1;
        mbx.touch_message(s.message, now);
        let m = &mbx.messages[&s.message];
        let loc = format!(
            "https://outlook.office.com/api/v2.0/Users('{uid}')/Messages('{}')/Attachments('{}')",
            mbx.message_id(m, false),
            mbx.attachment_id(m, i)
        );
        Resp::empty(StatusCode::CREATED)
            .with_header("location", loc)
            .with_header("content-length", "0")
    }

    // ---------------------------------------------------------------- reports

    /// `GET /reports/getMailboxUsageDetail(period='D7')` (graph-api.md §11).
    pub(crate) fn report(&self, call: &str) -> Resp {
        let Some(args) = call
            .strip_prefix("getMailboxUsageDetail(")
            .and_then(|a| a.strip_suffix(')'))
        else {
            return Resp::error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Resource not found for the segment '{call}'."),
            );
        };
        let period = args.trim_start_matches("period=").trim_matches('\'');
        let days = match period {
            "D7" => 7,
            "D30" => 30,
            "D90" => 90,
            "D180" => 180,
            _ => {
                return Resp::error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("Invalid value for period: '{period}'."),
                );
            }
        };
        let csv = {
            let t = lock(&self.tenant);
            let mut csv = String::from(
                "Report Refresh Date,User Principal Name,Display Name,Is Deleted,Deleted Date,Created Date,Last Activity Date,Item Count,Storage Used (Byte),Issue Warning Quota (Byte),Prohibit Send Quota (Byte),Prohibit Send/Receive Quota (Byte),Deleted Item Count,Deleted Item Size (Byte),Deleted Item Quota (Byte),Has Archive,Report Period\r\n",
            );
            let refresh = self.cfg.generated_at.format("%Y-%m-%d");
            for (idx, mbx) in &t.mailboxes {
                let u = &t.users[*idx];
                let deleted_key = mbx.resolve_folder("deleteditems");
                let (mut items, mut bytes, mut del_items, mut del_bytes) = (0u64, 0u64, 0u64, 0u64);
                let mut last = None;
                for m in mbx.messages.values() {
                    let size = (m.content.body.content.len()
                        + m.content
                            .attachments
                            .iter()
                            .map(Attachment::size)
                            .sum::<usize>()
                        + 1024) as u64;
                    if Some(m.folder) == deleted_key {
                        del_items += 1;
                        del_bytes += size;
                    } else {
                        items += 1;
                        bytes += size;
                    }
                    last = last.max(Some(m.received));
                }
                let name = if u.display_name.contains([',', '"']) {
                    format!("\"{}\"", u.display_name.replace('"', "\"\""))
                } else {
                    u.display_name.clone()
                };
                let _ = write!(
                    csv,
                    "{refresh},{},{name},False,,{},{},{items},{bytes},105226698752,106300440576,107374182400,{del_items},{del_bytes},32212254720,False,{days}\r\n",
                    u.upn,
                    u.created.format("%Y-%m-%d"),
                    last.map(|d| d.format("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                );
            }
            csv
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.reports).insert(id.clone(), csv);
        let mut r = Resp::empty(StatusCode::FOUND)
            .with_header("location", format!("{}/_reports/{id}", self.base_url));
        r.body = RespBody::Bytes {
            content_type: "text/plain".into(),
            data: axum::body::Bytes::new(),
        };
        r
    }

    pub(crate) fn report_download(&self, id: &str) -> Resp {
        match lock(&self.reports).get(id) {
            Some(csv) => Resp::bytes("application/octet-stream", csv.clone().into_bytes()),
            None => Resp::error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The report download link has expired.",
            ),
        }
    }

    // ---------------------------------------------------------------- $batch

    pub(crate) async fn batch(self: &Arc<Self>, req: Req) -> Resp {
        if req.method != Method::POST {
            return Resp::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "BadRequest",
                "Batch requests must use POST.",
            );
        }
        if let Err(e) = self.validate_bearer(&req.headers) {
            return e;
        }
        let bad = |m: &str| Resp::error(StatusCode::BAD_REQUEST, "BadRequest", m);
        let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
            return bad("Invalid batch payload format.");
        };
        let Some(reqs) = v["requests"].as_array() else {
            return bad("Invalid batch payload format.");
        };
        if reqs.len() > self.cfg.limits.batch_max_requests {
            return bad(&format!(
                "The number of batch requests exceeds the maximum of {}.",
                self.cfg.limits.batch_max_requests
            ));
        }
        let mut parsed = Vec::new();
        for r in reqs {
            let (Some(id), Some(method), Some(url)) =
                (r["id"].as_str(), r["method"].as_str(), r["url"].as_str())
            else {
                return bad("Each batch request needs id, method and url.");
            };
            if parsed
                .iter()
                .any(|(pid, ..): &(String, Req, Vec<String>)| pid == id)
            {
                return bad(&format!("Batch request id '{id}' is not unique."));
            }
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                return bad("Invalid method.");
            };
            let mut headers = HeaderMap::new();
            if let Some(h) = r["headers"].as_object() {
                for (k, val) in h {
                    if let (Ok(k), Some(Ok(val))) = (
                        axum::http::HeaderName::from_bytes(k.as_bytes()),
                        val.as_str().map(HeaderValue::from_str),
                    ) {
                        headers.insert(k, val);
                    }
                }
            }
            if let Some(a) = req.headers.get("authorization") {
                headers.insert("authorization", a.clone());
            }
            let body = match &r["body"] {
                Value::Null => axum::body::Bytes::new(),
                Value::String(s) => axum::body::Bytes::from(s.clone().into_bytes()),
                other => axum::body::Bytes::from(other.to_string().into_bytes()),
            };
            if !body.is_empty() && !headers.contains_key("content-type") {
                return bad("Content-Type header is required when a batch request has a body.");
            }
            let url = url.trim_start_matches("/v1.0");
            let url = if url.starts_with('/') {
                url.to_owned()
            } else {
                format!("/{url}")
            };
            let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
            let deps: Vec<String> = r["dependsOn"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            parsed.push((
                id.to_owned(),
                make_req(method, path, query, headers, body),
                deps,
            ));
        }
        let sequential = parsed.iter().any(|p| !p.2.is_empty());
        let mut results: Vec<(String, Resp)> = Vec::new();
        if sequential {
            for (id, r, deps) in parsed {
                let failed = deps.iter().any(|d| {
                    results
                        .iter()
                        .any(|(rid, resp)| rid == d && resp.status.as_u16() >= 400)
                        || !results.iter().any(|(rid, _)| rid == d)
                });
                if failed {
                    results.push((
                        id,
                        Resp::error(
                            StatusCode::FAILED_DEPENDENCY,
                            "FailedDependency",
                            "A dependent request failed.",
                        ),
                    ));
                    continue;
                }
                let resp = self.run_inner(r).await;
                results.push((id, resp));
            }
        } else {
            let sem = Arc::new(tokio::sync::Semaphore::new(
                self.cfg.limits.batch_parallelism.max(1),
            ));
            let mut set = tokio::task::JoinSet::new();
            for (pos, (id, r, _)) in parsed.into_iter().enumerate() {
                let sim = self.clone();
                let sem = sem.clone();
                set.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    (pos, id, sim.run_inner(r).await)
                });
            }
            let mut done = Vec::new();
            while let Some(res) = set.join_next().await {
                if let Ok(x) = res {
                    done.push(x);
                }
            }
            done.sort_by_key(|d| d.0);
            results = done.into_iter().map(|(_, id, r)| (id, r)).collect();
        }
        let responses: Vec<Value> = results
            .into_iter()
            .map(|(id, r)| {
                let mut headers = serde_json::Map::new();
                for (k, v) in &r.headers {
                    headers.insert(k.clone(), json!(v));
                }
                let body = match &r.body {
                    RespBody::Empty => Value::Null,
                    RespBody::Json(v) => {
                        headers.insert("Content-Type".into(), json!("application/json"));
                        v.clone()
                    }
                    RespBody::Bytes { content_type, data } => {
                        headers.insert("Content-Type".into(), json!(content_type));
                        json!(STANDARD.encode(data))
                    }
                };
                let mut o = json!({"id": id, "status": r.status.as_u16(), "headers": headers});
                if !body.is_null() {
                    o["body"] = body;
                }
                o
            })
            .collect();
        Resp::ok(json!({"responses": responses}))
    }

    async fn run_inner(self: &Arc<Self>, r: Req) -> Resp {
        let bytes_in = r.body.len();
        let (mut resp, kind) = self.graph(r).await;
        let rid = uuid::Uuid::new_v4().to_string();
        resp.finish(&rid, &rid);
        lock(&self.counters).record(kind, bytes_in, resp.body_len(), resp.status.as_u16());
        resp
    }
}

fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    Some((
        s.trim().parse().ok()?,
        e.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}
