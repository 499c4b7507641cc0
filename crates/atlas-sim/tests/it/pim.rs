//! The classic endpoints for calendars, contacts, To Do, mailbox settings, inbox rules
//! and master categories (docs/GRAPH.md, "Calendars, contacts, tasks and configuration"),
//! against the generated tenant.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::{self, error_code};
use atlas_sim::{SimConfig, roles};

fn values(v: &Value) -> Vec<Value> {
    v["value"].as_array().cloned().unwrap_or_default()
}

async fn all_pages(ctx: &common::Ctx, first: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut url = first.to_owned();
    loop {
        let page = ctx.get_json(&url).await;
        out.extend(values(&page));
        match page["@odata.nextLink"].as_str() {
            Some(n) => n.clone_into(&mut url),
            None => return out,
        }
    }
}

async fn send(
    ctx: &common::Ctx,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut rb = ctx
        .http
        .request(method, ctx.url(path))
        .bearer_auth(&ctx.token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb.send().await.expect("request")
}

fn with_roles(extra: &[&str]) -> SimConfig {
    let mut cfg = SimConfig::with_size(11, 4, 10);
    cfg.granted_roles = [roles::USER_READ_ALL, roles::MAIL_READ_WRITE]
        .iter()
        .chain(extra)
        .map(|r| (*r).to_owned())
        .collect();
    cfg
}

fn all_roles() -> SimConfig {
    with_roles(&[
        roles::CALENDARS_READ_WRITE,
        roles::CONTACTS_READ_WRITE,
        roles::TASKS_READ_WRITE_ALL,
        roles::MAILBOX_SETTINGS_READ_WRITE,
    ])
}

#[tokio::test]
async fn calendars_events_series_exceptions_and_attachments() {
    let ctx = common::start(all_roles()).await;
    let u = ctx.mailbox_user();
    let cals = ctx.get_json(&format!("/users/{u}/calendars")).await;
    let names: BTreeSet<String> = values(&cals)
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["Calendar", "Team Events"].map(str::to_owned).into());
    let default = ctx.get_json(&format!("/users/{u}/calendar")).await;
    assert_eq!(default["isDefaultCalendar"], true);
    // The mail API does not see calendars.
    let mail = all_pages(
        &ctx,
        &format!("/users/{u}/mailFolders?includeHiddenFolders=true"),
    )
    .await;
    assert!(
        mail.iter()
            .all(|f| f["displayName"] != "Calendar" && f["displayName"] != "Contacts")
    );

    let events = all_pages(&ctx, &format!("/users/{u}/calendar/events")).await;
    let every = all_pages(&ctx, &format!("/users/{u}/events")).await;
    assert!(every.len() > events.len(), "/events covers every calendar");
    let types: BTreeSet<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["seriesMaster", "singleInstance"].into());
    assert!(events.iter().any(|e| e["isAllDay"] == true));
    assert!(
        events
            .iter()
            .any(|e| e["attendees"].as_array().is_some_and(|a| !a.is_empty()))
    );
    for e in &events {
        assert_eq!(e["start"]["timeZone"], "UTC", "UTC unless asked otherwise");
        assert!(e["originalStartTimeZone"].is_string() && e["iCalUId"].is_string());
    }

    // Attachments of an event, with their bytes.
    let with_att = events
        .iter()
        .find(|e| e["hasAttachments"] == true)
        .expect("event with attachments");
    let id = with_att["id"].as_str().expect("id");
    let atts = ctx
        .get_json(&format!("/users/{u}/events/{id}/attachments"))
        .await;
    let first = &values(&atts)[0];
    assert_eq!(first["@odata.type"], "#microsoft.graph.fileAttachment");
    let aid = first["id"].as_str().expect("id");
    let raw = ctx
        .get(&format!("/users/{u}/events/{id}/attachments/{aid}/$value"))
        .await;
    assert_eq!(raw.status(), 200);
    let bytes = raw.bytes().await.expect("bytes");
    assert_eq!(bytes.len() as u64, first["size"].as_u64().expect("size"));

    // The weekly stand-up: 24 occurrences, one moved (an exception), one cancelled.
    let series = events
        .iter()
        .find(|e| e["subject"] == "Team stand-up")
        .expect("series");
    assert_eq!(series["recurrence"]["range"]["numberOfOccurrences"], 24);
    let sid = series["id"].as_str().expect("id");
    let inst = all_pages(
        &ctx,
        &format!("/users/{u}/events/{sid}/instances?startDateTime=2020-01-01T00:00:00Z&endDateTime=2030-01-01T00:00:00Z&$top=100"),
    )
    .await;
    assert_eq!(inst.len(), 23, "one cancelled occurrence is left out");
    let exceptions: Vec<&Value> = inst.iter().filter(|i| i["type"] == "exception").collect();
    assert_eq!(exceptions.len(), 1);
    assert_eq!(exceptions[0]["subject"], "Team stand-up (moved)");
    assert_ne!(
        exceptions[0]["start"],
        json!(exceptions[0]["originalStart"])
    );
    assert!(inst.iter().all(|i| i["seriesMasterId"] == sid));
    // One occurrence can be read by its id, in the zone asked for.
    let occ = inst
        .iter()
        .find(|i| i["type"] == "occurrence")
        .expect("occurrence");
    let r = ctx
        .get_with(
            &format!("/users/{u}/events/{}", occ["id"].as_str().expect("id")),
            &[("Prefer", "outlook.timezone=\"Tokyo Standard Time\"")],
        )
        .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["start"]["timeZone"], "Tokyo Standard Time");
    let (s, code, _) =
        error_code(ctx.get(&format!("/users/{u}/events/{sid}/instances")).await).await;
    assert_eq!((s, code.as_str()), (400, "ErrorInvalidParameter"));
}

#[tokio::test]
async fn creating_changing_and_deleting_meetings_sends_meeting_mail() {
    let ctx = common::start(all_roles()).await;
    let u = ctx.mailbox_user();
    ctx.sim.reset_invitations();
    let body = json!({
        "subject": "Launch sync",
        "start": {"dateTime": "2025-04-01T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2025-04-01T11:00:00", "timeZone": "UTC"},
        "attendees": [{"emailAddress": {"address": "a@fabrikam.com", "name": "A"}, "type": "required"}],
    });
    let r = ctx
        .post_json(&format!("/users/{u}/calendar/events"), &body)
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["isOrganizer"], true);
    assert_eq!(created["attendees"][0]["status"]["response"], "none");
    let r = send(
        &ctx,
        reqwest::Method::PATCH,
        &format!("/users/{u}/events/{id}"),
        Some(json!({"isReminderOn": false})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = send(
        &ctx,
        reqwest::Method::PATCH,
        &format!("/users/{u}/events/{id}"),
        Some(json!({"subject": "Launch sync (moved)"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = send(
        &ctx,
        reqwest::Method::DELETE,
        &format!("/users/{u}/events/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    // Without attendees nothing is sent.
    let alone = json!({"subject": "Dentist", "start": body["start"], "end": body["end"]});
    assert_eq!(
        ctx.post_json(&format!("/users/{u}/events"), &alone)
            .await
            .status(),
        201
    );
    let kinds: Vec<String> = ctx.sim.invitations().into_iter().map(|i| i.kind).collect();
    assert_eq!(kinds, ["request", "update", "cancellation"]);
    assert_eq!(ctx.sim.invitations()[0].recipients, ["a@fabrikam.com"]);
}

#[tokio::test]
async fn contacts_folders_and_photos() {
    let ctx = common::start(all_roles()).await;
    let u = ctx.mailbox_user();
    let folders = ctx.get_json(&format!("/users/{u}/contactFolders")).await;
    assert_eq!(values(&folders).len(), 1);
    assert_eq!(values(&folders)[0]["displayName"], "Suppliers");
    let fid = values(&folders)[0]["id"].as_str().expect("id").to_owned();
    let main = all_pages(&ctx, &format!("/users/{u}/contacts")).await;
    let suppliers = all_pages(&ctx, &format!("/users/{u}/contactFolders/{fid}/contacts")).await;
    assert_eq!((main.len(), suppliers.len()), (6, 2));
    assert!(
        main.iter()
            .all(|c| c["emailAddresses"][0]["address"].is_string())
    );
    let mut photos = 0;
    for c in main.iter().chain(&suppliers) {
        let cid = c["id"].as_str().expect("id");
        let r = ctx
            .get(&format!("/users/{u}/contacts/{cid}/photo/$value"))
            .await;
        if r.status() == 404 {
            continue;
        }
        photos += 1;
        assert_eq!(r.headers()["content-type"], "image/png");
        let bytes = r.bytes().await.expect("bytes");
        assert!(bytes.starts_with(b"\x89PNG"));
        let meta = ctx
            .get_json(&format!("/users/{u}/contacts/{cid}/photo"))
            .await;
        assert_eq!(
            (meta["width"].as_u64(), meta["height"].as_u64()),
            (Some(16), Some(16))
        );
    }
    assert!(photos >= 3, "{photos}");
    // Create, change, delete.
    let r = ctx
        .post_json(
            &format!("/users/{u}/contacts"),
            &json!({"givenName": "Ada", "surname": "Lovelace", "displayName": "Ada Lovelace"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let c: Value = r.json().await.expect("json");
    let cid = c["id"].as_str().expect("id");
    let r = send(
        &ctx,
        reqwest::Method::PATCH,
        &format!("/users/{u}/contacts/{cid}"),
        Some(json!({"jobTitle": "Analyst"})),
    )
    .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["jobTitle"], "Analyst");
    assert_ne!(v["changeKey"], c["changeKey"]);
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x30\0\0\0\x30".to_vec();
    let r = ctx
        .http
        .put(ctx.url(&format!("/users/{u}/contacts/{cid}/photo/$value")))
        .bearer_auth(&ctx.token)
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let meta = ctx
        .get_json(&format!("/users/{u}/contacts/{cid}/photo"))
        .await;
    assert_eq!(meta["width"], 48);
    let r = send(
        &ctx,
        reqwest::Method::DELETE,
        &format!("/users/{u}/contacts/{cid}"),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn todo_settings_rules_and_categories() {
    let ctx = common::start(all_roles()).await;
    let u = ctx.mailbox_user();
    let lists = ctx.get_json(&format!("/users/{u}/todo/lists")).await;
    let kinds: BTreeSet<String> = values(&lists)
        .iter()
        .map(|l| {
            l["wellknownListName"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["defaultList", "none"].map(str::to_owned).into());
    let default = values(&lists)
        .into_iter()
        .find(|l| l["wellknownListName"] == "defaultList")
        .expect("default");
    let lid = default["id"].as_str().expect("id");
    let tasks = all_pages(&ctx, &format!("/users/{u}/todo/lists/{lid}/tasks")).await;
    assert!(
        tasks
            .iter()
            .any(|t| t["status"] == "completed" && t["completedDateTime"].is_object())
    );
    let r = ctx
        .post_json(
            &format!("/users/{u}/todo/lists/{lid}/tasks"),
            &json!({"title": "Call Bob", "importance": "high"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.expect("json");
    let tid = t["id"].as_str().expect("id");
    let r = send(
        &ctx,
        reqwest::Method::PATCH,
        &format!("/users/{u}/todo/lists/{lid}/tasks/{tid}"),
        Some(json!({"status": "completed"})),
    )
    .await;
    assert_eq!(r.status(), 200);

    let s = ctx.get_json(&format!("/users/{u}/mailboxSettings")).await;
    for k in [
        "timeZone",
        "workingHours",
        "automaticRepliesSetting",
        "language",
        "userPurpose",
    ] {
        assert!(!s[k].is_null(), "{k} in {s}");
    }
    let ar = ctx
        .get_json(&format!(
            "/users/{u}/mailboxSettings/automaticRepliesSetting"
        ))
        .await;
    assert_eq!(ar["status"], s["automaticRepliesSetting"]["status"]);
    let r = send(
        &ctx,
        reqwest::Method::PATCH,
        &format!("/users/{u}/mailboxSettings"),
        Some(json!({"automaticRepliesSetting": {"status": "alwaysEnabled"}})),
    )
    .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["automaticRepliesSetting"]["status"], "alwaysEnabled");
    assert_eq!(
        v["automaticRepliesSetting"]["externalAudience"],
        s["automaticRepliesSetting"]["externalAudience"]
    );
    let r = send(
        &ctx,
        reqwest::Method::PATCH,
        &format!("/users/{u}/mailboxSettings"),
        Some(json!({"userPurpose": "shared"})),
    )
    .await;
    assert_eq!(r.status(), 400);

    let rules = ctx
        .get_json(&format!("/users/{u}/mailFolders/inbox/messageRules"))
        .await;
    let seq: Vec<i64> = values(&rules)
        .iter()
        .filter_map(|r| r["sequence"].as_i64())
        .collect();
    assert_eq!(seq, [1, 2, 3]);
    assert!(values(&rules)[0]["actions"]["moveToFolder"].is_string());
    let (s, _, _) = error_code(
        ctx.get(&format!("/users/{u}/mailFolders/archive/messageRules"))
            .await,
    )
    .await;
    assert_eq!(s, 404, "rules live on the Inbox only");
    let cats = ctx
        .get_json(&format!("/users/{u}/outlook/masterCategories"))
        .await;
    assert_eq!(values(&cats).len(), 8);
    assert!(
        values(&cats)
            .iter()
            .all(|c| c["color"].as_str().is_some_and(|c| c.starts_with("preset")))
    );
}

#[tokio::test]
async fn each_kind_needs_its_permission() {
    // Mail permissions only: every other kind is refused.
    let ctx = common::start(with_roles(&[])).await;
    let u = ctx.mailbox_user();
    for path in [
        "calendars",
        "events",
        "contacts",
        "contactFolders",
        "todo/lists",
        "mailboxSettings",
        "mailFolders/inbox/messageRules",
        "outlook/masterCategories",
    ] {
        let (s, code, _) = error_code(ctx.get(&format!("/users/{u}/{path}")).await).await;
        assert_eq!((s, code.as_str()), (403, "ErrorAccessDenied"), "{path}");
    }
    // Read permissions do not write.
    let ctx = common::start(with_roles(&[roles::CALENDARS_READ])).await;
    let u = ctx.mailbox_user();
    assert_eq!(ctx.get(&format!("/users/{u}/events")).await.status(), 200);
    let body = json!({"subject": "x", "start": {"dateTime": "2025-04-01T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2025-04-01T11:00:00", "timeZone": "UTC"}});
    let (s, _, _) = error_code(ctx.post_json(&format!("/users/{u}/events"), &body).await).await;
    assert_eq!(s, 403);
}

/// The configuration writes a restore makes, as their pages document them:
/// api/mailfolder-post-messagerules.md (displayName, sequence and actions required; 201),
/// api/outlookuser-post-mastercategories.md (201), api/user-update-mailboxsettings.md
/// (only the listed properties are writable; an empty PATCH changes nothing) — all
/// MailboxSettings.ReadWrite.
#[tokio::test]
async fn configuration_writes_follow_the_docs() {
    let ctx = common::start(all_roles()).await;
    let u = ctx.mailbox_user();
    let rules = format!("/users/{u}/mailFolders/inbox/messageRules");
    for missing in ["displayName", "sequence", "actions"] {
        let mut body = json!({"displayName": "R", "sequence": 9, "actions": {"markAsRead": true}});
        body.as_object_mut().expect("object").remove(missing);
        let r = send(&ctx, reqwest::Method::POST, &rules, Some(body)).await;
        assert_eq!(r.status(), 400, "{missing} is required");
    }
    let body = json!({"displayName": "R", "sequence": 9, "isEnabled": false, "actions": {"markAsRead": true}});
    let r = send(&ctx, reqwest::Method::POST, &rules, Some(body)).await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    assert_eq!(created["isEnabled"], false, "isEnabled as sent");
    let cats = format!("/users/{u}/outlook/masterCategories");
    let body = json!({"displayName": "Project expenses", "color": "preset9"});
    let r = send(&ctx, reqwest::Method::POST, &cats, Some(body.clone())).await;
    assert_eq!(r.status(), 201);
    let r = send(&ctx, reqwest::Method::POST, &cats, Some(body)).await;
    assert_eq!(r.status(), 409, "a duplicate name");
    let settings = format!("/users/{u}/mailboxSettings");
    let before = ctx.get_json(&settings).await;
    let r = send(&ctx, reqwest::Method::PATCH, &settings, Some(json!({}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        ctx.get_json(&settings).await,
        before,
        "an empty PATCH changes nothing"
    );
    let r = send(
        &ctx,
        reqwest::Method::PATCH,
        &settings,
        Some(json!({"archiveFolder": "x"})),
    )
    .await;
    assert_eq!(r.status(), 400, "archiveFolder is not writable");

    // MailboxSettings.Read reads but does not write.
    let ctx = common::start(with_roles(&[roles::MAILBOX_SETTINGS_READ])).await;
    let u = ctx.mailbox_user();
    let r = send(
        &ctx,
        reqwest::Method::PATCH,
        &format!("/users/{u}/mailboxSettings"),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = send(
        &ctx,
        reqwest::Method::POST,
        &format!("/users/{u}/outlook/masterCategories"),
        Some(json!({"displayName": "x"})),
    )
    .await;
    assert_eq!(r.status(), 403);
}
