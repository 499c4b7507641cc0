//! JSON views of directory and mail objects, in Graph's property names and order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::mime;
use crate::model::{
    AccountKind, Addr, Attachment, AttachmentKind, Mailbox, Message, MessageContent, User,
};

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

const EXO_PLAN_2: &str = "efb87545-963c-4e0d-99df-69c6916d9eb0";
const E3_SKU: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";
const TEAMS_PLAN: &str = "57ff2da0-773e-42df-b2af-ffb7a2317929";

/// Default user properties returned without `$select` (graph-api.md §3.1).
pub(crate) const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Properties that exist but cannot be selected on the `/users` collection (→ 501).
pub(crate) const USER_NOT_ON_COLLECTION: &[&str] = &[
    "aboutMe",
    "skills",
    "mailboxSettings",
    "birthday",
    "hireDate",
    "interests",
    "mySite",
    "pastProjects",
    "preferredName",
    "responsibilities",
    "schools",
];

pub(crate) fn user_full(u: &User) -> Map<String, Value> {
    let has_mbx = u.kind.has_mailbox();
    let licensed = matches!(
        u.kind,
        AccountKind::User | AccountKind::Disabled | AccountKind::NoMailbox
    );
    let plans: Vec<Value> = match u.kind {
        AccountKind::User | AccountKind::Disabled => vec![
            json!({"assignedDateTime": ts(u.created), "capabilityStatus": "Enabled", "service": "exchange", "servicePlanId": EXO_PLAN_2}),
            json!({"assignedDateTime": ts(u.created), "capabilityStatus": "Enabled", "service": "TeamspaceAPI", "servicePlanId": TEAMS_PLAN}),
        ],
        AccountKind::NoMailbox => vec![
            json!({"assignedDateTime": ts(u.created), "capabilityStatus": "Enabled", "service": "TeamspaceAPI", "servicePlanId": TEAMS_PLAN}),
        ],
        AccountKind::Shared | AccountKind::Unlicensed => vec![],
    };
    let nick = u.upn.split('@').next().unwrap_or_default().to_owned();
    let mut m = Map::new();
    m.insert("businessPhones".into(), json!([]));
    m.insert("displayName".into(), json!(u.display_name));
    m.insert("givenName".into(), json!(u.given_name));
    m.insert("jobTitle".into(), json!(u.job_title));
    m.insert(
        "mail".into(),
        if has_mbx { json!(u.upn) } else { Value::Null },
    );
    m.insert("mobilePhone".into(), Value::Null);
    m.insert("officeLocation".into(), json!(u.office));
    m.insert("preferredLanguage".into(), json!("en-US"));
    m.insert("surname".into(), json!(u.surname));
    m.insert("userPrincipalName".into(), json!(u.upn));
    m.insert("id".into(), json!(u.id));
    m.insert(
        "accountEnabled".into(),
        json!(matches!(
            u.kind,
            AccountKind::User | AccountKind::NoMailbox | AccountKind::Unlicensed
        )),
    );
    m.insert("createdDateTime".into(), json!(ts(u.created)));
    m.insert(
        "assignedLicenses".into(),
        if licensed {
            json!([{"disabledPlans": [], "skuId": E3_SKU}])
        } else {
            json!([])
        },
    );
    m.insert("assignedPlans".into(), Value::Array(plans));
    m.insert(
        "proxyAddresses".into(),
        if has_mbx {
            json!([format!("SMTP:{}", u.upn)])
        } else {
            json!([])
        },
    );
    m.insert("mailNickname".into(), json!(nick));
    m.insert("userType".into(), json!("Member"));
    m.insert(
        "usageLocation".into(),
        if licensed { json!("US") } else { Value::Null },
    );
    m.insert("companyName".into(), Value::Null);
    m.insert("department".into(), Value::Null);
    m.insert("employeeId".into(), Value::Null);
    m.insert("aboutMe".into(), Value::Null);
    m.insert("skills".into(), json!([]));
    m.insert(
        "mailboxSettings".into(),
        json!({"userPurpose": if u.kind == AccountKind::Shared { "shared" } else { "user" }}),
    );
    m
}

/// Projects an object onto `$select` (or the default set); `Err(name)` for an unknown property.
pub(crate) fn project(
    full: &Map<String, Value>,
    select: Option<&str>,
    default: &[&str],
    always: &[&str],
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for k in always {
        if let Some(v) = full.get(*k) {
            out.insert((*k).to_owned(), v.clone());
        }
    }
    match select {
        Some(sel) if !sel.trim().is_empty() => {
            for name in sel.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some((k, v)) = full.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) else {
                    return Err(name.to_owned());
                };
                out.insert(k.clone(), v.clone());
            }
        }
        _ => {
            for k in default {
                if let Some(v) = full.get(*k) {
                    out.insert((*k).to_owned(), v.clone());
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn folder_json(mbx: &Mailbox, key: u64) -> Value {
    let Some(f) = mbx.folders.get(&key) else {
        return Value::Null;
    };
    let (children, total, unread) = mbx.counts(key);
    let parent = f
        .parent
        .map_or_else(|| mbx.folder_id(u64::MAX), |p| mbx.folder_id(p));
    json!({
        "id": mbx.folder_id(key),
        "displayName": f.name,
        "parentFolderId": parent,
        "childFolderCount": children,
        "unreadItemCount": unread,
        "totalItemCount": total,
        "sizeInBytes": 0,
        "isHidden": f.hidden,
    })
}

fn addr(a: &Addr) -> Value {
    json!({"emailAddress": {"name": a.name, "address": a.address}})
}

fn addrs(v: &[Addr]) -> Value {
    Value::Array(v.iter().map(addr).collect())
}

pub(crate) fn conversation_id(c: &MessageContent) -> String {
    let root = c.references.first().unwrap_or(&c.internet_message_id);
    let d = Sha256::digest(root.as_bytes());
    format!(
        "AAQkAGI2{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..18])
    )
}

/// Default message properties in the documented order (graph-api.md §6.1).
pub(crate) const MESSAGE_DEFAULT: &[&str] = &[
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
];

/// Options that change how a message renders.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MsgView {
    pub immutable: bool,
    pub text_body: bool,
    /// Mail.ReadBasic.All only: no body, preview or attachments.
    pub basic_only: bool,
}

/// All properties of a message (the caller projects with `$select`).
pub(crate) fn message_full(
    mbx: &Mailbox,
    m: &Message,
    view: MsgView,
    with_headers: bool,
) -> Map<String, Value> {
    let c = &m.content;
    let ck = mbx.change_key(m);
    let id = mbx.message_id(m, view.immutable);
    let mut o = Map::new();
    o.insert("@odata.etag".into(), json!(format!("W/\"{ck}\"")));
    o.insert("id".into(), json!(id));
    o.insert("createdDateTime".into(), json!(ts(m.created)));
    o.insert("lastModifiedDateTime".into(), json!(ts(m.modified)));
    o.insert("changeKey".into(), json!(ck));
    o.insert("categories".into(), json!(m.categories));
    o.insert("receivedDateTime".into(), json!(ts(m.received)));
    o.insert("sentDateTime".into(), json!(ts(m.sent)));
    o.insert(
        "hasAttachments".into(),
        json!(c.attachments.iter().any(|a| !a.is_inline)),
    );
    o.insert("internetMessageId".into(), json!(c.internet_message_id));
    o.insert("subject".into(), json!(c.subject));
    o.insert("importance".into(), json!(c.importance));
    o.insert("parentFolderId".into(), json!(mbx.folder_id(m.folder)));
    o.insert("conversationId".into(), json!(conversation_id(c)));
    o.insert(
        "conversationIndex".into(),
        json!(STANDARD.encode(&Sha256::digest(c.internet_message_id.as_bytes())[..22])),
    );
    o.insert("isDeliveryReceiptRequested".into(), json!(false));
    o.insert("isReadReceiptRequested".into(), json!(false));
    o.insert("isRead".into(), json!(m.is_read));
    o.insert("isDraft".into(), json!(m.is_draft));
    o.insert(
        "webLink".into(),
        json!(format!(
            "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
            mbx.message_id(m, false)
        )),
    );
    o.insert("inferenceClassification".into(), json!("focused"));
    if !view.basic_only {
        o.insert("bodyPreview".into(), json!(mime::preview(c)));
        let body = if view.text_body && c.body.html {
            json!({"contentType": "text", "content": mime::html_to_text(&c.body.content)})
        } else {
            json!({"contentType": if c.body.html { "html" } else { "text" }, "content": &*c.body.content})
        };
        o.insert("uniqueBody".into(), body.clone());
        o.insert("body".into(), body);
    }
    let from = c.from.as_ref().map_or(Value::Null, addr);
    o.insert("sender".into(), from.clone());
    o.insert("from".into(), from);
    o.insert("toRecipients".into(), addrs(&c.to));
    o.insert("ccRecipients".into(), addrs(&c.cc));
    o.insert("bccRecipients".into(), addrs(&c.bcc));
    o.insert("replyTo".into(), addrs(&c.reply_to));
    o.insert("flag".into(), json!({"flagStatus": m.flag_status}));
    if with_headers {
        let raw = mime::render(c, m.sent, m.received);
        o.insert(
            "internetMessageHeaders".into(),
            Value::Array(top_headers(&raw)),
        );
    } else {
        o.insert("internetMessageHeaders".into(), json!([]));
    }
    o
}

/// The unfolded top-level header block of a MIME message as `{name, value}` pairs.
pub(crate) fn top_headers(raw: &[u8]) -> Vec<Value> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let text = String::from_utf8_lossy(&raw[..end]);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.to_owned(), v.trim().to_owned()));
        }
    }
    out.into_iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect()
}

pub(crate) fn attachment_json(
    mbx: &Mailbox,
    m: &Message,
    idx: usize,
    a: &Attachment,
    with_bytes: bool,
    expand_item: bool,
) -> Map<String, Value> {
    let mut o = Map::new();
    let ty = match a.kind {
        AttachmentKind::File(_) => "#microsoft.graph.fileAttachment",
        AttachmentKind::Item(_) => "#microsoft.graph.itemAttachment",
        AttachmentKind::Reference { .. } => "#microsoft.graph.referenceAttachment",
    };
    o.insert("@odata.type".into(), json!(ty));
    if let AttachmentKind::File(_) = a.kind {
        o.insert("@odata.mediaContentType".into(), json!(a.content_type));
    }
    o.insert("id".into(), json!(mbx.attachment_id(m, idx)));
    o.insert("lastModifiedDateTime".into(), json!(ts(a.last_modified)));
    o.insert("name".into(), json!(a.name));
    o.insert("contentType".into(), json!(a.content_type));
    o.insert("size".into(), json!(a.size()));
    o.insert("isInline".into(), json!(a.is_inline));
    match &a.kind {
        AttachmentKind::File(c) => {
            o.insert("contentId".into(), json!(a.content_id));
            o.insert("contentLocation".into(), Value::Null);
            if with_bytes {
                o.insert("contentBytes".into(), json!(STANDARD.encode(c.bytes())));
            }
        }
        AttachmentKind::Item(item) if expand_item => {
            o.insert("item@odata.context".into(), json!("https://graph.microsoft.com/v1.0/$metadata#users('')/messages('')/attachments('')/microsoft.graph.itemAttachment/item/$entity"));
            let c = &item.content;
            o.insert(
                "item".into(),
                json!({
                    "@odata.type": "#microsoft.graph.message",
                    "id": "",
                    "createdDateTime": ts(item.received),
                    "lastModifiedDateTime": ts(item.received),
                    "receivedDateTime": ts(item.received),
                    "sentDateTime": ts(item.sent),
                    "hasAttachments": false,
                    "internetMessageId": c.internet_message_id,
                    "subject": c.subject,
                    "bodyPreview": mime::preview(c),
                    "importance": c.importance,
                    "isRead": true,
                    "isDraft": false,
                    "body": {"contentType": if c.body.html { "html" } else { "text" }, "content": &*c.body.content},
                    "from": c.from.as_ref().map_or(Value::Null, addr),
                    "sender": c.from.as_ref().map_or(Value::Null, addr),
                    "toRecipients": addrs(&c.to),
                    "ccRecipients": addrs(&c.cc),
                    "bccRecipients": addrs(&c.bcc),
                    "replyTo": addrs(&c.reply_to),
                    "flag": {"flagStatus": "notFlagged"},
                }),
            );
        }
        AttachmentKind::Item(_) => {}
        AttachmentKind::Reference { source_url } => {
            // v1.0 exposes only the base properties; the URL is kept for the MIME-less view.
            let _ = source_url;
        }
    }
    o
}
