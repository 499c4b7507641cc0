//! The classic Outlook endpoints a backup tool reads for readable JSON, and restores
//! through when it must: calendars and events (api/user-list-calendars.md,
//! api/user-list-events.md, api/event-get.md, api/event-list-instances.md,
//! api/user-post-events.md, api/event-update.md, api/event-delete.md,
//! api/event-list-attachments.md), contact folders and contacts (api/user-list-contactfolders.md,
//! api/user-list-contacts.md, api/contact-get.md, api/profilephoto-get.md), To Do
//! (api/todo-list-lists.md, api/todotasklist-list-tasks.md), mailbox settings
//! (api/user-get-mailboxsettings.md, api/user-update-mailboxsettings.md), inbox rules
//! (api/mailfolder-list-messagerules.md) and master categories
//! (api/outlookuser-list-mastercategories.md).
//!
//! Times: `start`/`end` come back in UTC unless `Prefer: outlook.timezone="…"` names
//! another zone (api/event-get.md); all-day events keep midnight and take the requested
//! zone's name. Meeting mail: creating, changing or deleting an event the mailbox owner
//! organises sends a meeting request, update or cancellation to its attendees, as
//! Exchange does — the simulator counts each (see `SimHandle::invitations`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use crate::graph::{bad_select, item_not_found, next_link, parse_top};
use crate::http::{Req, Resp};
use crate::items::{
    Category, Item, Occurrence, Photo, Rule, dttz, event_span, item_class, occurrence_props,
    occurrence_starts, parse_dttz, prop, ts_key,
};
use crate::json::ts;
use crate::model::{Attachment, AttachmentKind, Mailbox, ROOT_FOLDER, Tenant, class};
use crate::server::{Sim, lock};

const GRAPH_CTX: &str = "https://graph.microsoft.com/v1.0/$metadata";

/// A meeting message Exchange sent on the owner's behalf.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invitation {
    /// The organizer's mailbox (UPN).
    pub mailbox: String,
    /// `request`, `update` or `cancellation`.
    pub kind: String,
    /// The meeting's subject.
    pub subject: String,
    /// Attendees' addresses the message went to.
    pub recipients: Vec<String>,
}

fn bad_request(code: &str, msg: &str) -> Resp {
    Resp::error(StatusCode::BAD_REQUEST, code, msg)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The zone `Prefer: outlook.timezone="…"` asks for (UTC when absent).
fn zone_pref(req: &Req) -> String {
    req.prefer()
        .iter()
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("outlook.timezone")
                .then(|| v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "UTC".to_owned())
}

/// Renders a stored `dateTimeTimeZone` in `zone`; all-day times keep their wall clock.
fn in_zone(v: &Value, zone: &str, all_day: bool) -> Value {
    if all_day {
        let mut v = v.clone();
        v["timeZone"] = json!(zone);
        return v;
    }
    parse_dttz(v).map_or_else(|| v.clone(), |t| dttz(t, zone))
}

fn preview(body: &Value) -> String {
    let content = body["content"].as_str().unwrap_or_default();
    let text = if body["contentType"].as_str() == Some("html") {
        crate::mime::html_to_text(content)
    } else {
        content.to_owned()
    };
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(255).collect()
}

/// The owner's address of mailbox `idx`.
fn owner(t: &Tenant, idx: usize) -> (String, String) {
    t.users
        .get(idx)
        .map(|u| (u.display_name.clone(), u.upn.clone()))
        .unwrap_or_default()
}

impl Mailbox {
    pub fn item_attachment_id(&self, key: u64, idx: usize) -> String {
        let mut raw = b"A".to_vec();
        raw.extend_from_slice(&self.tag.to_be_bytes());
        raw.extend_from_slice(&key.to_be_bytes());
        raw.extend_from_slice(&u32::try_from(idx).unwrap_or(u32::MAX).to_be_bytes());
        format!("AAMkAGI2ATT{}", URL_SAFE_NO_PAD.encode(raw))
    }

    fn resolve_item_attachment(&self, key: u64, len: usize, id: &str) -> Option<usize> {
        (0..len).find(|i| self.item_attachment_id(key, *i) == id)
    }

    fn folder_change_key(&self, key: u64) -> String {
        let seq = self.folders.get(&key).map_or(0, |f| f.seq);
        let mut raw = b"FCK".to_vec();
        raw.extend_from_slice(&key.to_be_bytes());
        raw.extend_from_slice(&seq.to_be_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The folder of a class by well-known name, or any of the class by id.
    fn folder_of_class(&self, id: &str, folder_class: &str) -> Option<u64> {
        self.resolve_any_folder(id)
            .filter(|k| self.folders.get(k).is_some_and(|f| f.class == folder_class))
    }

    fn default_folder(&self, well_known: &str) -> Option<u64> {
        self.folders
            .values()
            .find(|f| f.well_known == Some(well_known))
            .map(|f| f.key)
    }
}

fn common_item(mbx: &Mailbox, item: &Item) -> Map<String, Value> {
    let ck = mbx.item_change_key(item);
    let mut o = Map::new();
    o.insert("@odata.etag".into(), json!(format!("W/\"{ck}\"")));
    o.insert("id".into(), json!(mbx.item_id(item.key)));
    o.insert("createdDateTime".into(), json!(ts(item.created)));
    o.insert("lastModifiedDateTime".into(), json!(ts(item.modified)));
    o.insert("changeKey".into(), json!(ck));
    o.insert("categories".into(), json!(item.categories));
    o
}

/// An event as `GET …/events/{id}` returns it, times in `zone`.
pub(crate) fn event_json(mbx: &Mailbox, item: &Item, zone: &str) -> Map<String, Value> {
    let mut o = common_item(mbx, item);
    o.insert("transactionId".into(), Value::Null);
    o.insert("hasAttachments".into(), json!(!item.attachments.is_empty()));
    o.insert(
        "bodyPreview".into(),
        json!(preview(prop(&item.props, "body"))),
    );
    let recurring = item.props.get("recurrence").is_some_and(Value::is_object);
    o.insert(
        "type".into(),
        json!(if recurring {
            "seriesMaster"
        } else {
            "singleInstance"
        }),
    );
    o.insert("seriesMasterId".into(), Value::Null);
    o.insert(
        "webLink".into(),
        json!(format!(
            "https://outlook.office365.com/owa/?itemid={}&exvsurl=1&path=/calendar/item",
            mbx.item_id(item.key)
        )),
    );
    put_props(&mut o, &item.props, zone);
    o
}

fn put_props(o: &mut Map<String, Value>, props: &Map<String, Value>, zone: &str) {
    let all_day = prop(props, "isAllDay").as_bool().unwrap_or(false);
    for (k, v) in props {
        let v = if k == "start" || k == "end" {
            in_zone(v, zone, all_day)
        } else {
            v.clone()
        };
        o.insert(k.clone(), v);
    }
}

/// One occurrence or exception of a series, as `instances` returns it.
fn instance_json(
    mbx: &Mailbox,
    master: &Item,
    original_start: DateTime<Utc>,
    zone: &str,
) -> Option<Map<String, Value>> {
    let (props, exception) = occurrence_props(master, original_start)?;
    let mut o = common_item(mbx, master);
    let id = mbx.occurrence_id(master.key, original_start);
    o.insert(
        "@odata.etag".into(),
        json!(format!("W/\"{}\"", mbx.item_change_key(master))),
    );
    o.insert("id".into(), json!(id));
    o.insert("transactionId".into(), Value::Null);
    o.insert(
        "hasAttachments".into(),
        json!(!master.attachments.is_empty()),
    );
    o.insert("bodyPreview".into(), json!(preview(prop(&props, "body"))));
    o.insert(
        "type".into(),
        json!(if exception { "exception" } else { "occurrence" }),
    );
    o.insert("seriesMasterId".into(), json!(mbx.item_id(master.key)));
    o.insert("originalStart".into(), json!(ts(original_start)));
    o.insert("recurrence".into(), Value::Null);
    put_props(&mut o, &props, zone);
    Some(o)
}

fn attachment_view(
    mbx: &Mailbox,
    key: u64,
    idx: usize,
    a: &Attachment,
    bytes: bool,
) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert(
        "@odata.type".into(),
        json!("#microsoft.graph.fileAttachment"),
    );
    o.insert("@odata.mediaContentType".into(), json!(a.content_type));
    o.insert("id".into(), json!(mbx.item_attachment_id(key, idx)));
    o.insert("lastModifiedDateTime".into(), json!(ts(a.last_modified)));
    o.insert("name".into(), json!(a.name));
    o.insert("contentType".into(), json!(a.content_type));
    o.insert("size".into(), json!(a.size()));
    o.insert("isInline".into(), json!(a.is_inline));
    o.insert("contentId".into(), json!(a.content_id));
    o.insert("contentLocation".into(), Value::Null);
    if bytes && let AttachmentKind::File(c) = &a.kind {
        o.insert("contentBytes".into(), json!(STANDARD.encode(c.bytes())));
    }
    o
}

fn calendar_json(mbx: &Mailbox, key: u64, owner: &(String, String)) -> Value {
    let f = &mbx.folders[&key];
    let default = f.well_known == Some("calendar");
    json!({
        "id": mbx.folder_id(key),
        "name": f.name,
        "color": f.props.get("color").cloned().unwrap_or(json!("auto")),
        "hexColor": "",
        "isDefaultCalendar": default,
        "changeKey": mbx.folder_change_key(key),
        "canShare": true,
        "canViewPrivateItems": true,
        "canEdit": true,
        "allowedOnlineMeetingProviders": ["teamsForBusiness"],
        "defaultOnlineMeetingProvider": "teamsForBusiness",
        "isTallyingResponses": true,
        "isRemovable": !default,
        "owner": {"name": owner.0, "address": owner.1},
    })
}

fn contact_json(mbx: &Mailbox, item: &Item) -> Map<String, Value> {
    let mut o = common_item(mbx, item);
    o.insert("parentFolderId".into(), json!(mbx.folder_id(item.folder)));
    for (k, v) in &item.props {
        o.insert(k.clone(), v.clone());
    }
    o
}

fn task_json(mbx: &Mailbox, item: &Item) -> Map<String, Value> {
    let mut o = common_item(mbx, item);
    o.insert("hasAttachments".into(), json!(!item.attachments.is_empty()));
    for (k, v) in &item.props {
        o.insert(k.clone(), v.clone());
    }
    o
}

fn todo_list_json(mbx: &Mailbox, key: u64) -> Value {
    let f = &mbx.folders[&key];
    json!({
        "@odata.etag": format!("W/\"{}\"", mbx.folder_change_key(key)),
        "displayName": f.name,
        "isOwner": true,
        "isShared": false,
        "wellknownListName": f.props.get("wellknownListName").cloned().unwrap_or(json!("none")),
        "id": mbx.folder_id(key),
    })
}

/// Paging over an already rendered collection: `$top` (default 10, at most 1000),
/// `$skip`, `$select` (id always).
fn page(sim: &Sim, req: &Req, ctx: &str, all: &[Map<String, Value>], ty: &str) -> Resp {
    if req.q("$filter").is_some() || req.q("$search").is_some() {
        return bad_request(
            "ErrorInvalidUrlQueryFilter",
            "The filter expression is not supported by this simulator.",
        );
    }
    let top = match parse_top(req, 10, 1000) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let skip: usize = req.q("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut value = Vec::new();
    for o in all.iter().skip(skip).take(top) {
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        match crate::json::project(o, req.q("$select"), &keys, &["@odata.etag", "id"]) {
            Ok(p) => value.push(Value::Object(p)),
            Err(n) => return bad_select(&n, ty),
        }
    }
    let mut body = json!({"@odata.context": format!("{GRAPH_CTX}#{ctx}"), "value": value});
    if skip + top < all.len() {
        body["@odata.nextLink"] = json!(next_link(
            &sim.base_url,
            req,
            "$skip",
            &(skip + top).to_string()
        ));
    }
    Resp::ok(body)
}

fn one(req: &Req, mut o: Map<String, Value>, ctx: &str, ty: &str) -> Resp {
    match crate::json::project(
        &o,
        req.q("$select"),
        &o.keys().map(String::as_str).collect::<Vec<_>>(),
        &["@odata.etag", "id"],
    ) {
        Ok(mut p) => {
            p.insert("@odata.context".into(), json!(format!("{GRAPH_CTX}#{ctx}")));
            Resp::ok(Value::Object(p))
        }
        Err(n) => {
            o.clear();
            bad_select(&n, ty)
        }
    }
}

/// Writable event properties (api/event-update.md); everything else is computed.
const EVENT_WRITABLE: &[&str] = &[
    "subject",
    "body",
    "start",
    "end",
    "isAllDay",
    "location",
    "locations",
    "attendees",
    "recurrence",
    "showAs",
    "importance",
    "sensitivity",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "allowNewTimeProposals",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "hideAttendees",
];

/// Changes that do not concern attendees, so Exchange sends no update for them.
const PRIVATE_CHANGES: &[&str] = &["isReminderOn", "reminderMinutesBeforeStart", "categories"];

const CONTACT_WRITABLE: &[&str] = &[
    "displayName",
    "givenName",
    "surname",
    "middleName",
    "nickName",
    "title",
    "initials",
    "generation",
    "fileAs",
    "emailAddresses",
    "imAddresses",
    "businessPhones",
    "homePhones",
    "mobilePhone",
    "jobTitle",
    "companyName",
    "department",
    "officeLocation",
    "profession",
    "businessHomePage",
    "assistantName",
    "manager",
    "spouseName",
    "personalNotes",
    "children",
    "birthday",
    "businessAddress",
    "homeAddress",
    "otherAddress",
];

/// Writable mailbox settings: the list of api/user-update-mailboxsettings.md
/// (`archiveFolder` is not on it; `userPurpose` is read-only).
const SETTINGS_WRITABLE: &[&str] = &[
    "automaticRepliesSetting",
    "timeZone",
    "workingHours",
    "language",
    "dateFormat",
    "timeFormat",
    "delegateMeetingMessageDeliveryOptions",
];

/// Writable messageRule properties (api/messagerule-update.md).
const RULE_WRITABLE: &[&str] = &[
    "displayName",
    "sequence",
    "isEnabled",
    "conditions",
    "actions",
    "exceptions",
];

const TASK_WRITABLE: &[&str] = &[
    "title",
    "body",
    "importance",
    "status",
    "isReminderOn",
    "reminderDateTime",
    "dueDateTime",
    "startDateTime",
    "completedDateTime",
    "recurrence",
];

fn apply(
    props: &mut Map<String, Value>,
    input: &Map<String, Value>,
    writable: &[&str],
) -> Vec<String> {
    let mut changed = Vec::new();
    for (k, v) in input {
        if writable.contains(&k.as_str()) && props.get(k) != Some(v) {
            props.insert(k.clone(), v.clone());
            changed.push(k.clone());
        }
    }
    changed
}

fn attendee_addresses(props: &Map<String, Value>) -> Vec<String> {
    prop(props, "attendees")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["emailAddress"]["address"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Sim {
    fn invite(&self, mailbox: &str, kind: &str, props: &Map<String, Value>) {
        if !prop(props, "isOrganizer").as_bool().unwrap_or(false) {
            return;
        }
        let recipients = attendee_addresses(props);
        if recipients.is_empty() {
            return;
        }
        lock(&self.invitations).push(Invitation {
            mailbox: mailbox.to_owned(),
            kind: kind.to_owned(),
            subject: prop(props, "subject")
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            recipients,
        });
    }

    fn pim<R>(
        &self,
        user: &str,
        f: impl FnOnce(&mut Tenant, usize, &mut Mailbox) -> R,
    ) -> Option<R> {
        let mut t = lock(&self.tenant);
        let idx = t.find_user(user)?;
        let mut mbx = t.mailboxes.remove(&idx)?;
        let r = f(&mut t, idx, &mut mbx);
        t.mailboxes.insert(idx, mbx);
        Some(r)
    }

    // ---------------------------------------------------------------- calendars

    pub(crate) fn list_calendars(&self, req: &Req, user: &str) -> Resp {
        self.pim(user, |t, idx, mbx| {
            let o = owner(t, idx);
            let all: Vec<Map<String, Value>> = mbx
                .folders
                .values()
                .filter(|f| f.class == class::CALENDAR)
                .map(|f| obj(calendar_json(mbx, f.key, &o)))
                .collect();
            page(
                self,
                req,
                &format!("users('{user}')/calendars"),
                &all,
                "calendar",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn get_calendar(&self, req: &Req, user: &str, cal: Option<&str>) -> Resp {
        self.pim(user, |t, idx, mbx| {
            let key = match cal {
                Some(c) => mbx.folder_of_class(c, class::CALENDAR),
                None => mbx.default_folder("calendar"),
            };
            let Some(key) = key else {
                return item_not_found();
            };
            one(
                req,
                obj(calendar_json(mbx, key, &owner(t, idx))),
                &format!("users('{user}')/calendars/$entity"),
                "calendar",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    /// `GET …/events`: single events and series masters (not occurrences), of one calendar
    /// or, for `/users/{id}/events`, of all.
    pub(crate) fn list_events(
        &self,
        req: &Req,
        user: &str,
        cal: Option<&str>,
        all_calendars: bool,
    ) -> Resp {
        let zone = zone_pref(req);
        self.pim(user, |_, _, mbx| {
            let key = match cal {
                Some(c) => mbx.folder_of_class(c, class::CALENDAR),
                None => mbx.default_folder("calendar"),
            };
            let Some(key) = key else {
                return item_not_found();
            };
            let all: Vec<Map<String, Value>> = mbx
                .pim
                .items
                .values()
                .filter(|i| i.class == item_class::EVENT)
                .filter(|i| {
                    if all_calendars {
                        mbx.folders
                            .get(&i.folder)
                            .is_some_and(|f| f.class == class::CALENDAR)
                    } else {
                        i.folder == key
                    }
                })
                .map(|i| event_json(mbx, i, &zone))
                .collect();
            page(self, req, &format!("users('{user}')/events"), &all, "event")
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn get_event(&self, req: &Req, user: &str, id: &str) -> Resp {
        let zone = zone_pref(req);
        self.pim(user, |_, _, mbx| {
            if let Some(k) = mbx.resolve_item_of(id, item_class::EVENT) {
                return one(
                    req,
                    event_json(mbx, &mbx.pim.items[&k], &zone),
                    &format!("users('{user}')/events/$entity"),
                    "event",
                );
            }
            if let Some((k, start)) = mbx.resolve_occurrence(id)
                && let Some(o) = instance_json(mbx, &mbx.pim.items[&k], start, &zone)
            {
                return one(req, o, &format!("users('{user}')/events/$entity"), "event");
            }
            item_not_found()
        })
        .unwrap_or_else(item_not_found)
    }

    /// `GET …/events/{id}/instances?startDateTime=…&endDateTime=…` (both required).
    pub(crate) fn event_instances(&self, req: &Req, user: &str, id: &str) -> Resp {
        let zone = zone_pref(req);
        let parse = |name: &str| {
            req.q(name).and_then(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|d| d.with_timezone(&Utc))
                    .ok()
                    .or_else(|| crate::items::parse_local(v).map(|n| n.and_utc()))
            })
        };
        let (Some(from), Some(to)) = (parse("startDateTime"), parse("endDateTime")) else {
            return bad_request(
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
            );
        };
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.resolve_item_of(id, item_class::EVENT) else {
                return item_not_found();
            };
            let item = &mbx.pim.items[&k];
            let mut all = Vec::new();
            if item.props.get("recurrence").is_some_and(Value::is_object) {
                let length = event_span(&item.props).map_or(Duration::zero(), |(s, e)| e - s);
                for start in occurrence_starts(&item.props, to, 5_000) {
                    let Some(o) = instance_json(mbx, item, start, &zone) else {
                        continue;
                    };
                    // An exception may have moved; test its own times against the window.
                    let span = o
                        .get("start")
                        .and_then(parse_dttz)
                        .zip(o.get("end").and_then(parse_dttz));
                    let (s, e) = span.unwrap_or((start, start + length));
                    if e > from && s < to {
                        all.push(o);
                    }
                }
            } else if let Some((s, e)) = event_span(&item.props)
                && e > from
                && s < to
            {
                all.push(event_json(mbx, item, &zone));
            }
            page(
                self,
                req,
                &format!("users('{user}')/events('{id}')/instances"),
                &all,
                "event",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    /// `POST …/calendars/{id}/events`, `…/calendar/events`, `…/events` (api/user-post-events.md).
    pub(crate) fn create_event(&self, req: &Req, user: &str, cal: Option<&str>) -> Resp {
        let input = match req.json_body() {
            Ok(Value::Object(m)) => m,
            Ok(_) => return bad_request("BadRequest", "The request body must be a JSON object."),
            Err(e) => return *e,
        };
        if parse_dttz(&input.get("start").cloned().unwrap_or_default()).is_none()
            || parse_dttz(&input.get("end").cloned().unwrap_or_default()).is_none()
        {
            return bad_request(
                "ErrorInvalidRequest",
                "The event needs a start and an end (dateTimeTimeZone).",
            );
        }
        let now = Utc::now();
        let mut attachments = Vec::new();
        for a in input
            .get("attachments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match crate::write::parse_attachment(a, now) {
                Ok(a) => attachments.push(a),
                Err(e) => return e,
            }
        }
        let zone = zone_pref(req);
        self.pim(user, |t, idx, mbx| {
            let key = match cal {
                Some(c) => mbx.folder_of_class(c, class::CALENDAR),
                None => mbx.default_folder("calendar"),
            };
            let Some(folder) = key else { return item_not_found() };
            let (name, upn) = owner(t, idx);
            let start_zone = prop(&input, "start")["timeZone"].as_str().unwrap_or("UTC").to_owned();
            let mut props = obj(json!({
                "subject": "", "body": {"contentType": "html", "content": ""},
                "importance": "normal", "sensitivity": "normal", "isAllDay": false, "isCancelled": false,
                "isOrganizer": true, "responseRequested": true, "showAs": "busy",
                "location": {"displayName": "", "locationType": "default", "uniqueIdType": "unknown"},
                "locations": [], "attendees": [], "recurrence": null,
                "organizer": {"emailAddress": {"name": name, "address": upn}},
                "reminderMinutesBeforeStart": 15, "isReminderOn": true, "allowNewTimeProposals": true,
                "isOnlineMeeting": false, "onlineMeetingProvider": "unknown", "onlineMeetingUrl": null,
                "onlineMeeting": null, "hideAttendees": false,
                "originalStartTimeZone": start_zone, "originalEndTimeZone": prop(&input, "end")["timeZone"].as_str().unwrap_or("UTC"),
                "iCalUId": format!("040000008200E00074C5B7101A82E00800000000{}", uuid::Uuid::new_v4().simple()),
                "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            }));
            apply(&mut props, &input, EVENT_WRITABLE);
            if let Some(a) = props.get_mut("attendees").and_then(Value::as_array_mut) {
                for x in a.iter_mut() {
                    if x.get("status").is_none() {
                        x["status"] = json!({"response": "none", "time": "0001-01-01T00:00:00Z"});
                    }
                    if x.get("type").is_none() {
                        x["type"] = json!("required");
                    }
                }
            }
            let categories = input.get("categories").and_then(Value::as_array).map(|c| {
                c.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()
            }).unwrap_or_default();
            let key = mbx.add_item(Item {
                key: 0, folder, class: item_class::EVENT.into(), version: 0, seq: 0, added_seq: 0,
                created: now, modified: now, categories, props, attachments,
                photo: None, occurrences: BTreeMap::new(),
            });
            let item = &mbx.pim.items[&key];
            self.invite(&upn, "request", &item.props);
            let mut o = event_json(mbx, item, &zone);
            o.insert("@odata.context".into(), json!(format!("{GRAPH_CTX}#users('{user}')/events/$entity")));
            Resp::json(StatusCode::CREATED, Value::Object(o))
        })
        .unwrap_or_else(item_not_found)
    }

    /// `PATCH …/events/{id}`: a series, a single event, or one occurrence (which becomes an
    /// exception).
    pub(crate) fn update_event(&self, req: &Req, user: &str, id: &str) -> Resp {
        let input = match req.json_body() {
            Ok(Value::Object(m)) => m,
            Ok(_) => return bad_request("BadRequest", "The request body must be a JSON object."),
            Err(e) => return *e,
        };
        let zone = zone_pref(req);
        let now = Utc::now();
        self.pim(user, |t, idx, mbx| {
            let (_, upn) = owner(t, idx);
            if let Some(k) = mbx.resolve_item_of(id, item_class::EVENT) {
                let item = mbx
                    .pim
                    .items
                    .get_mut(&k)
                    .expect("invariant: resolved key exists");
                let changed = apply(&mut item.props, &input, EVENT_WRITABLE);
                if let Some(c) = input.get("categories").and_then(Value::as_array) {
                    item.categories = c
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect();
                }
                let notify = changed
                    .iter()
                    .any(|c| !PRIVATE_CHANGES.contains(&c.as_str()));
                let props = item.props.clone();
                mbx.touch_item(k, now);
                if notify {
                    self.invite(&upn, "update", &props);
                }
                return Resp::ok(Value::Object(event_json(mbx, &mbx.pim.items[&k], &zone)));
            }
            if let Some((k, start)) = mbx.resolve_occurrence(id) {
                let item = mbx
                    .pim
                    .items
                    .get_mut(&k)
                    .expect("invariant: resolved key exists");
                let entry = item.occurrences.entry(ts_key(start)).or_insert(Occurrence {
                    cancelled: false,
                    props: Map::new(),
                });
                let mut notify = false;
                for (key, v) in &input {
                    if EVENT_WRITABLE.contains(&key.as_str()) && key != "recurrence" {
                        entry.props.insert(key.clone(), v.clone());
                        notify |= !PRIVATE_CHANGES.contains(&key.as_str());
                    }
                }
                let props = item.props.clone();
                mbx.touch_item(k, now);
                if notify {
                    self.invite(&upn, "update", &props);
                }
                return instance_json(mbx, &mbx.pim.items[&k], start, &zone)
                    .map_or_else(item_not_found, |o| Resp::ok(Value::Object(o)));
            }
            item_not_found()
        })
        .unwrap_or_else(item_not_found)
    }

    /// `DELETE …/events/{id}`: the organizer's delete cancels the meeting for attendees.
    pub(crate) fn delete_event(&self, user: &str, id: &str) -> Resp {
        self.pim(user, |t, idx, mbx| {
            let (_, upn) = owner(t, idx);
            if let Some(k) = mbx.resolve_item_of(id, item_class::EVENT) {
                if let Some(item) = mbx.remove_item(k) {
                    self.invite(&upn, "cancellation", &item.props);
                }
                return Resp::empty(StatusCode::NO_CONTENT);
            }
            if let Some((k, start)) = mbx.resolve_occurrence(id) {
                let item = mbx
                    .pim
                    .items
                    .get_mut(&k)
                    .expect("invariant: resolved key exists");
                item.occurrences.insert(
                    ts_key(start),
                    Occurrence {
                        cancelled: true,
                        props: Map::new(),
                    },
                );
                let props = item.props.clone();
                mbx.touch_item(k, Utc::now());
                self.invite(&upn, "cancellation", &props);
                return Resp::empty(StatusCode::NO_CONTENT);
            }
            item_not_found()
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn list_item_attachments(&self, req: &Req, user: &str, id: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.resolve_item(id) else {
                return item_not_found();
            };
            let item = &mbx.pim.items[&k];
            let all: Vec<Map<String, Value>> = item
                .attachments
                .iter()
                .enumerate()
                .map(|(i, a)| attachment_view(mbx, k, i, a, true))
                .collect();
            page(
                self,
                req,
                &format!("users('{user}')/events('{id}')/attachments"),
                &all,
                "attachment",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn get_item_attachment(
        &self,
        req: &Req,
        user: &str,
        id: &str,
        att: &str,
        raw: bool,
    ) -> Resp {
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.resolve_item(id) else {
                return item_not_found();
            };
            let item = &mbx.pim.items[&k];
            let Some(i) = mbx.resolve_item_attachment(k, item.attachments.len(), att) else {
                return item_not_found();
            };
            let a = &item.attachments[i];
            if raw {
                return match &a.kind {
                    AttachmentKind::File(c) => Resp::bytes(
                        a.content_type
                            .as_deref()
                            .unwrap_or("application/octet-stream"),
                        c.bytes().to_vec(),
                    ),
                    _ => item_not_found(),
                };
            }
            one(
                req,
                attachment_view(mbx, k, i, a, true),
                &format!("users('{user}')/events('{id}')/attachments/$entity"),
                "attachment",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn add_item_attachment(&self, req: &Req, user: &str, id: &str) -> Resp {
        let v = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        let now = Utc::now();
        let att = match crate::write::parse_attachment(&v, now) {
            Ok(a) => a,
            Err(e) => return e,
        };
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.resolve_item(id) else {
                return item_not_found();
            };
            let item = mbx
                .pim
                .items
                .get_mut(&k)
                .expect("invariant: resolved key exists");
            item.attachments.push(att);
            let i = item.attachments.len() - 1;
            mbx.touch_item(k, now);
            let a = &mbx.pim.items[&k].attachments[i];
            Resp::json(
                StatusCode::CREATED,
                Value::Object(attachment_view(mbx, k, i, a, false)),
            )
        })
        .unwrap_or_else(item_not_found)
    }

    // ---------------------------------------------------------------- contacts

    /// `GET …/contactFolders` lists the default Contacts folder's children;
    /// `…/contactFolders/{id}/childFolders` another folder's.
    pub(crate) fn list_contact_folders(&self, req: &Req, user: &str, parent: Option<&str>) -> Resp {
        self.pim(user, |_, _, mbx| {
            let parent = match parent {
                Some(p) => mbx.folder_of_class(p, class::CONTACTS),
                None => mbx.default_folder("contacts"),
            };
            let Some(parent) = parent else { return item_not_found() };
            let all: Vec<Map<String, Value>> = mbx
                .folders
                .values()
                .filter(|f| f.parent == Some(parent) && f.class == class::CONTACTS)
                .map(|f| obj(json!({"id": mbx.folder_id(f.key), "displayName": f.name, "parentFolderId": mbx.folder_id(parent)})))
                .collect();
            page(self, req, &format!("users('{user}')/contactFolders"), &all, "contactFolder")
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn get_contact_folder(&self, req: &Req, user: &str, id: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.folder_of_class(id, class::CONTACTS) else { return item_not_found() };
            let f = &mbx.folders[&k];
            let parent = f.parent.map_or_else(String::new, |p| mbx.folder_id(p));
            one(req, obj(json!({"id": mbx.folder_id(k), "displayName": f.name, "parentFolderId": parent})), &format!("users('{user}')/contactFolders/$entity"), "contactFolder")
        })
        .unwrap_or_else(item_not_found)
    }

    /// `POST …/contactFolders[/{id}/childFolders]` and To Do's `POST …/todo/lists`.
    pub(crate) fn create_pim_folder(
        &self,
        req: &Req,
        user: &str,
        parent: Option<&str>,
        folder_class: &'static str,
    ) -> Resp {
        let v = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        let Some(name) = v["displayName"].as_str().filter(|s| !s.trim().is_empty()) else {
            return bad_request(
                "ErrorInvalidRequest",
                "The displayName property is required.",
            );
        };
        let name = name.to_owned();
        self.pim(user, |_, _, mbx| {
            let well_known = if folder_class == class::CONTACTS { "contacts" } else { "tasks" };
            let parent = match parent {
                Some(p) => mbx.folder_of_class(p, folder_class),
                None => mbx.default_folder(well_known).or(Some(ROOT_FOLDER)),
            };
            let Some(parent) = parent else { return item_not_found() };
            if mbx.folders.values().any(|f| f.parent == Some(parent) && f.name.eq_ignore_ascii_case(&name)) {
                return Resp::error(StatusCode::CONFLICT, "ErrorFolderExists", "A folder with the specified name already exists.");
            }
            let key = mbx.add_folder_of(folder_class, parent, &name, None, false);
            if folder_class == class::TASKS {
                if let Some(f) = mbx.folders.get_mut(&key) {
                    f.props.insert("wellknownListName".into(), json!("none"));
                }
                return Resp::json(StatusCode::CREATED, todo_list_json(mbx, key));
            }
            Resp::json(StatusCode::CREATED, json!({"id": mbx.folder_id(key), "displayName": name, "parentFolderId": mbx.folder_id(parent)}))
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn list_contacts(&self, req: &Req, user: &str, folder: Option<&str>) -> Resp {
        self.pim(user, |_, _, mbx| {
            let key = match folder {
                Some(f) => mbx.folder_of_class(f, class::CONTACTS),
                None => mbx.default_folder("contacts"),
            };
            let Some(key) = key else {
                return item_not_found();
            };
            let all: Vec<Map<String, Value>> = mbx
                .pim
                .items
                .values()
                .filter(|i| i.folder == key && i.class == item_class::CONTACT)
                .map(|i| contact_json(mbx, i))
                .collect();
            page(
                self,
                req,
                &format!("users('{user}')/contacts"),
                &all,
                "contact",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn get_contact(&self, req: &Req, user: &str, id: &str) -> Resp {
        self.get_item(
            req,
            user,
            id,
            item_class::CONTACT,
            contact_json,
            "contacts",
            "contact",
        )
    }

    /// `GET` of one item of `class` by its id, rendered by `render`, with the OData
    /// context of `entity_set` (under `users('…')/`) and type `ty`: the single-item
    /// endpoints of contacts and tasks differ only in these (`get_event` also resolves
    /// occurrence ids, so it looks the item up itself).
    #[allow(clippy::too_many_arguments)] // The endpoint's request and what differs per kind.
    fn get_item(
        &self,
        req: &Req,
        user: &str,
        id: &str,
        class: &str,
        render: fn(&Mailbox, &Item) -> Map<String, Value>,
        entity_set: &str,
        ty: &str,
    ) -> Resp {
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.resolve_item_of(id, class) else {
                return item_not_found();
            };
            one(
                req,
                render(mbx, &mbx.pim.items[&k]),
                &format!("users('{user}')/{entity_set}/$entity"),
                ty,
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn create_contact(&self, req: &Req, user: &str, folder: Option<&str>) -> Resp {
        let input = match req.json_body() {
            Ok(Value::Object(m)) => m,
            Ok(_) => return bad_request("BadRequest", "The request body must be a JSON object."),
            Err(e) => return *e,
        };
        let now = Utc::now();
        self.pim(user, |_, _, mbx| {
            let key = match folder {
                Some(f) => mbx.folder_of_class(f, class::CONTACTS),
                None => mbx.default_folder("contacts"),
            };
            let Some(folder) = key else {
                return item_not_found();
            };
            let mut props = obj(json!({
                "displayName": "", "givenName": null, "surname": null, "emailAddresses": [],
                "imAddresses": [], "businessPhones": [], "homePhones": [], "mobilePhone": null,
                "jobTitle": null, "companyName": null, "personalNotes": "", "children": [],
                "businessAddress": {}, "homeAddress": {}, "otherAddress": {},
            }));
            apply(&mut props, &input, CONTACT_WRITABLE);
            let categories = input
                .get("categories")
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let key = mbx.add_item(Item {
                key: 0,
                folder,
                class: item_class::CONTACT.into(),
                version: 0,
                seq: 0,
                added_seq: 0,
                created: now,
                modified: now,
                categories,
                props,
                attachments: Vec::new(),
                photo: None,
                occurrences: BTreeMap::new(),
            });
            Resp::json(
                StatusCode::CREATED,
                Value::Object(contact_json(mbx, &mbx.pim.items[&key])),
            )
        })
        .unwrap_or_else(item_not_found)
    }

    /// `PATCH` of a contact or a To Do task (the writable set depends on the class).
    pub(crate) fn update_item(&self, req: &Req, user: &str, id: &str, item_cls: &str) -> Resp {
        let input = match req.json_body() {
            Ok(Value::Object(m)) => m,
            Ok(_) => return bad_request("BadRequest", "The request body must be a JSON object."),
            Err(e) => return *e,
        };
        let now = Utc::now();
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.resolve_item_of(id, item_cls) else {
                return item_not_found();
            };
            let item = mbx
                .pim
                .items
                .get_mut(&k)
                .expect("invariant: resolved key exists");
            let writable = if item_cls == item_class::TASK {
                TASK_WRITABLE
            } else {
                CONTACT_WRITABLE
            };
            apply(&mut item.props, &input, writable);
            if let Some(c) = input.get("categories").and_then(Value::as_array) {
                item.categories = c
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect();
            }
            mbx.touch_item(k, now);
            let item = &mbx.pim.items[&k];
            let o = if item_cls == item_class::TASK {
                task_json(mbx, item)
            } else {
                contact_json(mbx, item)
            };
            Resp::ok(Value::Object(o))
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn delete_item(&self, user: &str, id: &str, item_cls: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.resolve_item_of(id, item_cls) else {
                return item_not_found();
            };
            mbx.remove_item(k);
            Resp::empty(StatusCode::NO_CONTENT)
        })
        .unwrap_or_else(item_not_found)
    }

    /// `GET …/contacts/{id}/photo` (metadata) and `…/photo/$value` (bytes).
    pub(crate) fn get_contact_photo(&self, user: &str, id: &str, raw: bool) -> Resp {
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.resolve_item_of(id, item_class::CONTACT) else {
                return item_not_found();
            };
            let Some(p) = &mbx.pim.items[&k].photo else {
                return Resp::error(StatusCode::NOT_FOUND, "ErrorItemNotFound", "The photo wasn't found.");
            };
            if raw {
                return Resp::bytes(&p.content_type, p.bytes.to_vec());
            }
            Resp::ok(json!({
                "@odata.context": format!("{GRAPH_CTX}#users('{user}')/contacts('{id}')/photo/$entity"),
                "@odata.mediaContentType": p.content_type,
                "@odata.mediaEtag": format!("W/\"{}\"", URL_SAFE_NO_PAD.encode(&p.bytes[..p.bytes.len().min(12)])),
                "id": format!("{}X{}", p.width, p.height),
                "width": p.width,
                "height": p.height,
            }))
        })
        .unwrap_or_else(item_not_found)
    }

    /// `PUT …/contacts/{id}/photo/$value` with the image bytes.
    pub(crate) fn put_contact_photo(&self, req: &Req, user: &str, id: &str) -> Resp {
        let content_type = req
            .header("content-type")
            .unwrap_or("image/jpeg")
            .to_owned();
        let bytes: Arc<[u8]> = Arc::from(req.body.to_vec());
        let (width, height) = png_size(&bytes).unwrap_or((96, 96));
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.resolve_item_of(id, item_class::CONTACT) else {
                return item_not_found();
            };
            if let Some(i) = mbx.pim.items.get_mut(&k) {
                i.photo = Some(Photo {
                    content_type,
                    bytes,
                    width,
                    height,
                });
            }
            mbx.touch_item(k, Utc::now());
            Resp::empty(StatusCode::OK)
        })
        .unwrap_or_else(item_not_found)
    }

    // ---------------------------------------------------------------- To Do

    pub(crate) fn list_todo_lists(&self, req: &Req, user: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            let all: Vec<Map<String, Value>> = mbx
                .folders
                .values()
                .filter(|f| f.class == class::TASKS)
                .map(|f| obj(todo_list_json(mbx, f.key)))
                .collect();
            page(
                self,
                req,
                &format!("users('{user}')/todo/lists"),
                &all,
                "todoTaskList",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn get_todo_list(&self, req: &Req, user: &str, list: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.folder_of_class(list, class::TASKS) else {
                return item_not_found();
            };
            one(
                req,
                obj(todo_list_json(mbx, k)),
                &format!("users('{user}')/todo/lists/$entity"),
                "todoTaskList",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn list_tasks(&self, req: &Req, user: &str, list: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            let Some(k) = mbx.folder_of_class(list, class::TASKS) else {
                return item_not_found();
            };
            let all: Vec<Map<String, Value>> = mbx
                .pim
                .items
                .values()
                .filter(|i| i.folder == k && i.class == item_class::TASK)
                .map(|i| task_json(mbx, i))
                .collect();
            page(
                self,
                req,
                &format!("users('{user}')/todo/lists('{list}')/tasks"),
                &all,
                "todoTask",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn get_task(&self, req: &Req, user: &str, id: &str) -> Resp {
        self.get_item(
            req,
            user,
            id,
            item_class::TASK,
            task_json,
            "todo/lists/tasks",
            "todoTask",
        )
    }

    pub(crate) fn create_task(&self, req: &Req, user: &str, list: &str) -> Resp {
        let input = match req.json_body() {
            Ok(Value::Object(m)) => m,
            Ok(_) => return bad_request("BadRequest", "The request body must be a JSON object."),
            Err(e) => return *e,
        };
        if input.get("title").and_then(Value::as_str).is_none() {
            return bad_request("invalidRequest", "The title property is required.");
        }
        let now = Utc::now();
        self.pim(user, |_, _, mbx| {
            let Some(folder) = mbx.folder_of_class(list, class::TASKS) else { return item_not_found() };
            let mut props = obj(json!({
                "title": "", "body": {"content": "", "contentType": "text"}, "importance": "normal",
                "status": "notStarted", "isReminderOn": false, "reminderDateTime": null,
                "dueDateTime": null, "startDateTime": null, "completedDateTime": null, "recurrence": null,
                "bodyLastModifiedDateTime": ts(now),
            }));
            apply(&mut props, &input, TASK_WRITABLE);
            let categories = input.get("categories").and_then(Value::as_array).map(|c| {
                c.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()
            }).unwrap_or_default();
            let key = mbx.add_item(Item {
                key: 0, folder, class: item_class::TASK.into(), version: 0, seq: 0, added_seq: 0,
                created: now, modified: now, categories, props, attachments: Vec::new(),
                photo: None, occurrences: BTreeMap::new(),
            });
            Resp::json(StatusCode::CREATED, Value::Object(task_json(mbx, &mbx.pim.items[&key])))
        })
        .unwrap_or_else(item_not_found)
    }

    // ---------------------------------------------------------------- configuration

    /// `GET /users/{id}/mailboxSettings[/{property}]`.
    pub(crate) fn get_mailbox_settings(&self, user: &str, property: Option<&str>) -> Resp {
        self.pim(user, |t, idx, mbx| {
            let mut all = mbx.pim.settings.clone();
            let purpose = t
                .users
                .get(idx)
                .map(|u| crate::json::user_full(u)["mailboxSettings"]["userPurpose"].clone());
            all.insert("userPurpose".into(), purpose.unwrap_or(Value::Null));
            match property {
                None => {
                    all.insert(
                        "@odata.context".into(),
                        json!(format!("{GRAPH_CTX}#users('{user}')/mailboxSettings")),
                    );
                    Resp::ok(Value::Object(all))
                }
                Some(p) => match all.iter().find(|(k, _)| k.eq_ignore_ascii_case(p)) {
                    Some((k, v)) => {
                        let mut o = match v {
                            Value::Object(m) => m.clone(),
                            other => obj(json!({"value": other})),
                        };
                        o.insert(
                            "@odata.context".into(),
                            json!(format!("{GRAPH_CTX}#users('{user}')/mailboxSettings/{k}")),
                        );
                        Resp::ok(Value::Object(o))
                    }
                    None => bad_request(
                        "BadRequest",
                        &format!("Resource not found for the segment '{p}'."),
                    ),
                },
            }
        })
        .unwrap_or_else(item_not_found)
    }

    /// `PATCH /users/{id}/mailboxSettings`: the writable settings (userPurpose is read-only).
    pub(crate) fn update_mailbox_settings(&self, req: &Req, user: &str) -> Resp {
        let input = match req.json_body() {
            Ok(Value::Object(m)) => m,
            Ok(_) => return bad_request("BadRequest", "The request body must be a JSON object."),
            Err(e) => return *e,
        };
        if let Some(bad) = input
            .keys()
            .find(|k| !SETTINGS_WRITABLE.contains(&k.as_str()) && !k.starts_with('@'))
        {
            return bad_request(
                "ErrorInvalidRequest",
                &format!("The property '{bad}' can't be updated."),
            );
        }
        let r = self.pim(user, |_, _, mbx| {
            for (k, v) in &input {
                if k.starts_with('@') {
                    continue;
                }
                match (mbx.pim.settings.get_mut(k), v) {
                    (Some(Value::Object(old)), Value::Object(new)) => {
                        for (nk, nv) in new {
                            old.insert(nk.clone(), nv.clone());
                        }
                    }
                    _ => {
                        mbx.pim.settings.insert(k.clone(), v.clone());
                    }
                }
            }
        });
        if r.is_none() {
            return item_not_found();
        }
        self.get_mailbox_settings(user, None)
    }

    fn rule_json(mbx: &Mailbox, r: &Rule) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("id".into(), json!(mbx.item_id(r.key)));
        for (k, v) in &r.props {
            o.insert(k.clone(), v.clone());
        }
        o
    }

    /// Inbox rules exist only on the Inbox (graph-api.md §12).
    fn inbox_only(mbx: &Mailbox, folder: &str) -> bool {
        mbx.resolve_folder(folder)
            .is_some_and(|k| mbx.folders[&k].well_known == Some("inbox"))
    }

    pub(crate) fn list_rules(&self, req: &Req, user: &str, folder: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            if !Self::inbox_only(mbx, folder) {
                return item_not_found();
            }
            let mut rules: Vec<&Rule> = mbx.pim.rules.iter().collect();
            rules.sort_by_key(|r| prop(&r.props, "sequence").as_i64().unwrap_or(0));
            let all: Vec<Map<String, Value>> =
                rules.into_iter().map(|r| Self::rule_json(mbx, r)).collect();
            page(
                self,
                req,
                &format!("users('{user}')/mailFolders('inbox')/messageRules"),
                &all,
                "messageRule",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn get_rule(&self, req: &Req, user: &str, folder: &str, id: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            if !Self::inbox_only(mbx, folder) {
                return item_not_found();
            }
            match mbx.pim.rules.iter().find(|r| mbx.item_id(r.key) == id) {
                Some(r) => one(
                    req,
                    Self::rule_json(mbx, r),
                    &format!("users('{user}')/mailFolders('inbox')/messageRules/$entity"),
                    "messageRule",
                ),
                None => item_not_found(),
            }
        })
        .unwrap_or_else(item_not_found)
    }

    /// `POST` (no id) or `PATCH` of an inbox rule.
    pub(crate) fn write_rule(&self, req: &Req, user: &str, folder: &str, id: Option<&str>) -> Resp {
        let input = match req.json_body() {
            Ok(Value::Object(m)) => m,
            Ok(_) => return bad_request("BadRequest", "The request body must be a JSON object."),
            Err(e) => return *e,
        };
        self.pim(user, |_, _, mbx| {
            if !Self::inbox_only(mbx, folder) {
                return item_not_found();
            }
            let (status, pos) = match id {
                None => {
                    // api/mailfolder-post-messagerules.md: displayName, sequence and
                    // actions are required.
                    if input.get("displayName").and_then(Value::as_str).is_none() {
                        return bad_request("ErrorInvalidRequest", "The displayName property is required.");
                    }
                    if input.get("sequence").and_then(Value::as_i64).is_none() {
                        return bad_request("ErrorInvalidRequest", "The sequence property is required.");
                    }
                    if !input.get("actions").is_some_and(Value::is_object) {
                        return bad_request("ErrorInvalidRequest", "The actions property is required.");
                    }
                    let key = mbx.alloc_key();
                    mbx.pim.rules.push(Rule { key, props: obj(json!({"isEnabled": true, "hasError": false, "isReadOnly": false, "sequence": mbx.pim.rules.len() + 1})) });
                    (StatusCode::CREATED, mbx.pim.rules.len() - 1)
                }
                Some(id) => match mbx.pim.rules.iter().position(|r| mbx.item_id(r.key) == id) {
                    Some(p) => (StatusCode::OK, p),
                    None => return item_not_found(),
                },
            };
            apply(&mut mbx.pim.rules[pos].props, &input, RULE_WRITABLE);
            Resp::json(status, Value::Object(Self::rule_json(mbx, &mbx.pim.rules[pos])))
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn delete_rule(&self, user: &str, folder: &str, id: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            if !Self::inbox_only(mbx, folder) {
                return item_not_found();
            }
            let before = mbx.pim.rules.len();
            let tag = mbx.tag;
            mbx.pim
                .rules
                .retain(|r| Mailbox::encode_message_id(tag, r.key, 0, false) != id);
            if mbx.pim.rules.len() == before {
                return item_not_found();
            }
            Resp::empty(StatusCode::NO_CONTENT)
        })
        .unwrap_or_else(item_not_found)
    }

    fn category_json(c: &Category) -> Map<String, Value> {
        obj(json!({"id": c.id, "displayName": c.display_name, "color": c.color}))
    }

    pub(crate) fn list_categories(&self, req: &Req, user: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            let all: Vec<Map<String, Value>> =
                mbx.pim.categories.iter().map(Self::category_json).collect();
            page(
                self,
                req,
                &format!("users('{user}')/outlook/masterCategories"),
                &all,
                "outlookCategory",
            )
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn get_category(&self, req: &Req, user: &str, id: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            match mbx.pim.categories.iter().find(|c| c.id == id) {
                Some(c) => one(
                    req,
                    Self::category_json(c),
                    &format!("users('{user}')/outlook/masterCategories/$entity"),
                    "outlookCategory",
                ),
                None => item_not_found(),
            }
        })
        .unwrap_or_else(item_not_found)
    }

    /// `POST` (no id: displayName and color) or `PATCH` (color only; the name is fixed).
    pub(crate) fn write_category(&self, req: &Req, user: &str, id: Option<&str>) -> Resp {
        let input = match req.json_body() {
            Ok(v) => v,
            Err(e) => return *e,
        };
        self.pim(user, |_, _, mbx| match id {
            None => {
                let Some(name) = input["displayName"].as_str().filter(|s| !s.is_empty()) else {
                    return bad_request(
                        "ErrorInvalidRequest",
                        "The displayName property is required.",
                    );
                };
                if mbx
                    .pim
                    .categories
                    .iter()
                    .any(|c| c.display_name.eq_ignore_ascii_case(name))
                {
                    return Resp::error(
                        StatusCode::CONFLICT,
                        "ErrorDuplicateCategory",
                        "A category with this name already exists.",
                    );
                }
                let c = Category {
                    id: uuid::Uuid::new_v4().to_string(),
                    display_name: name.to_owned(),
                    color: input["color"].as_str().unwrap_or("none").to_owned(),
                };
                let o = Self::category_json(&c);
                mbx.pim.categories.push(c);
                Resp::json(StatusCode::CREATED, Value::Object(o))
            }
            Some(id) => match mbx.pim.categories.iter_mut().find(|c| c.id == id) {
                Some(c) => {
                    if let Some(color) = input["color"].as_str() {
                        color.clone_into(&mut c.color);
                    }
                    Resp::ok(Value::Object(Self::category_json(c)))
                }
                None => item_not_found(),
            },
        })
        .unwrap_or_else(item_not_found)
    }

    pub(crate) fn delete_category(&self, user: &str, id: &str) -> Resp {
        self.pim(user, |_, _, mbx| {
            let before = mbx.pim.categories.len();
            mbx.pim.categories.retain(|c| c.id != id);
            if mbx.pim.categories.len() == before {
                item_not_found()
            } else {
                Resp::empty(StatusCode::NO_CONTENT)
            }
        })
        .unwrap_or_else(item_not_found)
    }
}

/// Width and height of a PNG (from IHDR), for photo metadata.
fn png_size(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(b"\x89PNG\r\n\x1a\n") || b.len() < 24 {
        return None;
    }
    Some((
        u32::from_be_bytes(b[16..20].try_into().ok()?),
        u32::from_be_bytes(b[20..24].try_into().ok()?),
    ))
}
