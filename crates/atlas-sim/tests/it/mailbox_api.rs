//! The mailbox import and export API (resources/mailbox-import-export-api-overview.md and
//! the pages named in docs/GRAPH.md): discovery, folders and their delta, items and their
//! delta, exportItems with its 20-item limit, import sessions whose URL needs no token and
//! expires, full-fidelity round trips, permissions, throttling and faults per mailbox.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::common::{self, error_code};
use atlas_sim::{ItemDump, MailboxApiMode, SimConfig, roles};

fn values(v: &Value) -> Vec<Value> {
    v["value"].as_array().cloned().unwrap_or_default()
}

fn cfg_with(extra: &[&str]) -> SimConfig {
    let mut cfg = SimConfig::with_size(13, 4, 12);
    cfg.granted_roles = [roles::USER_READ_ALL, roles::MAIL_READ]
        .iter()
        .chain(extra)
        .map(|r| (*r).to_owned())
        .collect();
    cfg
}

fn full() -> SimConfig {
    cfg_with(&[
        roles::MAILBOX_FOLDER_READ_WRITE_ALL,
        roles::MAILBOX_ITEM_READ_ALL,
        roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL,
    ])
}

struct Mbx<'a> {
    ctx: &'a common::Ctx,
    id: String,
}

impl Mbx<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/admin/exchange/mailboxes/{}{rest}", self.id)
    }
    async fn get(&self, rest: &str) -> Value {
        self.ctx.get_json(&self.path(rest)).await
    }
    async fn post(&self, rest: &str, body: &Value) -> reqwest::Response {
        self.ctx.post_json(&self.path(rest), body).await
    }
    async fn all(&self, rest: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut url = self.path(rest);
        loop {
            let page = self.ctx.get_json(&url).await;
            out.extend(values(&page));
            match page["@odata.nextLink"].as_str() {
                Some(n) => n.clone_into(&mut url),
                None => return out,
            }
        }
    }
    /// A folder at the root by well-known name.
    async fn folder(&self, name: &str) -> Value {
        self.get(&format!("/folders/{name}")).await
    }
}

async fn mailbox<'a>(ctx: &'a common::Ctx, user: &str) -> Mbx<'a> {
    let s = ctx
        .get_json(&format!("/users/{user}/settings/exchange"))
        .await;
    let id = s["primaryMailboxId"]
        .as_str()
        .expect("primaryMailboxId")
        .to_owned();
    assert!(id.starts_with("MBX:") && id.contains('@'), "{id}");
    assert_eq!(id, ctx.sim.mailbox_id(user).expect("admin"));
    Mbx { ctx, id }
}

fn two_users(ctx: &common::Ctx) -> (String, String) {
    let users: Vec<String> = ctx
        .sim
        .users()
        .into_iter()
        .filter(|u| u.has_mailbox)
        .map(|u| u.id)
        .collect();
    (users[0].clone(), users[2].clone())
}

async fn delta_round(m: &Mbx<'_>, first: &str) -> (Vec<Value>, String) {
    let mut url = first.to_owned();
    let mut items = Vec::new();
    loop {
        let r = m
            .ctx
            .get_with(&url, &[("Prefer", "odata.maxpagesize=3")])
            .await;
        assert_eq!(r.status(), 200, "{url}");
        let page: Value = r.json().await.expect("json");
        items.extend(values(&page));
        if let Some(d) = page["@odata.deltaLink"].as_str() {
            return (items, d.to_owned());
        }
        page["@odata.nextLink"]
            .as_str()
            .expect("next")
            .clone_into(&mut url);
    }
}

#[tokio::test]
async fn folders_of_every_class_with_paging_filter_and_delta() {
    let ctx = common::start(full()).await;
    let (u, _) = two_users(&ctx);
    let m = mailbox(&ctx, &u).await;
    let first = m.get("/folders").await;
    assert_eq!(values(&first).len(), 10, "page size 10");
    assert!(
        first["@odata.nextLink"]
            .as_str()
            .is_some_and(|n| n.contains("$skip=10"))
    );
    let top = m.all("/folders").await;
    let classes: BTreeSet<&str> = top.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(
        classes,
        [
            "IPF.Appointment",
            "IPF.Contact",
            "IPF.Note",
            "IPF.StickyNote",
            "IPF.Task"
        ]
        .into()
    );
    assert!(
        top.iter().any(|f| f["displayName"] == "Yammer Root"),
        "hidden folders too"
    );
    let cal = m.folder("calendar").await;
    assert_eq!(
        (cal["type"].as_str(), cal["wellKnownName"].as_str()),
        (Some("IPF.Appointment"), Some("calendar"))
    );
    let cid = cal["id"].as_str().expect("id");
    assert!(
        cid.ends_with('=') || cid.len() % 4 == 0,
        "EWS ids are padded base64: {cid}"
    );
    let cals = m.get("/folders?$filter=type eq 'IPF.Appointment'").await;
    assert_eq!(values(&cals).len(), 1, "the root's children only: {cals}");
    let kids = m.get(&format!("/folders/{cid}/childFolders")).await;
    assert_eq!(values(&kids)[0]["displayName"], "Team Events");

    // Folder delta covers the whole tree; a created folder shows up in the next round.
    let (tree, delta) = delta_round(&m, &m.ctx.url(&m.path("/folders/delta"))).await;
    assert!(tree.len() > top.len());
    assert!(tree.iter().any(|f| f["displayName"] == "Team Events"));
    let r = m
        .post(
            "/folders",
            &json!({"displayName": "Restore-1", "type": "IPF.Appointment"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let (s, code, _) =
        error_code(m.post("/folders", &json!({"displayName": "No type"})).await).await;
    assert_eq!((s, code.as_str()), (400, "ErrorInvalidRequest"));
    let (changes, _) = delta_round(&m, &delta).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["displayName"], "Restore-1");

    let mut cfg = full();
    cfg.mailbox_api = MailboxApiMode {
        list_folders_whole_tree: true,
        ..MailboxApiMode::default()
    };
    let ctx2 = common::start(cfg).await;
    let m2 = mailbox(&ctx2, &ctx2.mailbox_user()).await;
    let cals = m2.get("/folders?$filter=type eq 'IPF.Appointment'").await;
    assert_eq!(values(&cals).len(), 2, "every folder with the knob on");
}

#[tokio::test]
async fn items_and_item_delta() {
    let ctx = common::start(full()).await;
    let (u, _) = two_users(&ctx);
    let m = mailbox(&ctx, &u).await;
    let contacts = m.folder("contacts").await;
    let fid = contacts["id"].as_str().expect("id").to_owned();
    let items = m.all(&format!("/folders/{fid}/items")).await;
    assert_eq!(items.len(), 6);
    assert!(
        items
            .iter()
            .all(|i| i["type"] == "IPM.Contact" && i["size"].as_u64() > Some(0))
    );
    let inbox = m.all("/folders/inbox/items?$top=50").await;
    assert!(!inbox.is_empty() && inbox.iter().all(|i| i["type"] == "IPM.Note"));

    let (first, delta) = delta_round(
        &m,
        &m.ctx.url(&m.path(&format!("/folders/{fid}/items/delta"))),
    )
    .await;
    assert_eq!(first.len(), 6);
    let dump = ctx.sim.dump_pim(&u).expect("dump");
    let ids: Vec<&ItemDump> = dump
        .items
        .iter()
        .filter(|i| i.folder_path == "Contacts")
        .collect();
    ctx.sim
        .update_item(&u, &ids[0].id, json!({"jobTitle": "CEO"}))
        .expect("update");
    ctx.sim.delete_item(&u, &ids[1].id).expect("delete");
    let (changes, _) = delta_round(&m, &delta).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        changes
            .iter()
            .filter(|c| c.get("@removed").is_some())
            .count(),
        1
    );
    let updated = changes
        .iter()
        .find(|c| c.get("@removed").is_none())
        .expect("changed");
    let before = first
        .iter()
        .find(|i| i["id"] == updated["id"])
        .expect("same id");
    assert_ne!(before["changeKey"], updated["changeKey"]);
}

#[tokio::test]
async fn export_and_import_recreate_every_kind_without_meeting_mail() {
    let ctx = common::start(full()).await;
    let (src_user, dst_user) = two_users(&ctx);
    let src = mailbox(&ctx, &src_user).await;
    let dst = mailbox(&ctx, &dst_user).await;
    ctx.sim.reset_invitations();
    let before_dst = ctx.sim.dump_pim(&dst_user).expect("dump");

    // Up to 20 ids per call; more is refused.
    let many: Vec<String> = (0..21).map(|i| format!("id{i}")).collect();
    let (s, code, _) = error_code(src.post("/exportItems", &json!({"itemIds": many})).await).await;
    assert_eq!((s, code.as_str()), (400, "ErrorInvalidRequest"));

    // Every item of the calendar, the contacts and the notes, plus a few messages.
    let mut exported = Vec::new();
    for folder in ["calendar", "contacts", "notes", "tasks"] {
        let f = src.folder(folder).await;
        let fid = f["id"].as_str().expect("id").to_owned();
        let ids: Vec<String> = src
            .all(&format!("/folders/{fid}/items"))
            .await
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_owned())
            .collect();
        for chunk in ids.chunks(20) {
            let mut body = chunk.to_vec();
            body.push("AAMkAGI2bm9wZQ==".to_owned());
            let r = src.post("/exportItems", &json!({"itemIds": body})).await;
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.expect("json");
            let out = values(&v);
            assert_eq!(out.len(), chunk.len() + 1);
            assert_eq!(
                out.last().expect("last")["error"]["code"],
                "ErrorItemNotFound"
            );
            for e in &out[..chunk.len()] {
                exported.push((folder, e["data"].as_str().expect("data").to_owned()));
            }
        }
    }
    let inbox_msgs: Vec<String> = src.get("/folders/inbox/items?$top=3").await["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    let r = src
        .post("/exportItems", &json!({"itemIds": inbox_msgs}))
        .await;
    let v: Value = r.json().await.expect("json");
    for e in values(&v) {
        exported.push(("inbox", e["data"].as_str().expect("data").to_owned()));
    }

    // Import into the other mailbox, under new folders (restore-style roots).
    let session = dst.post("/createImportSession", &json!({})).await;
    assert_eq!(session.status(), 200);
    let session: Value = session.json().await.expect("json");
    let url = session["importUrl"].as_str().expect("importUrl").to_owned();
    assert!(url.contains("/importItem?authtoken="), "{url}");
    assert!(
        session["expirationDateTime"]
            .as_str()
            .is_some_and(|e| e.ends_with('Z'))
    );
    let mut targets = std::collections::HashMap::new();
    for (folder, class) in [
        ("calendar", "IPF.Appointment"),
        ("contacts", "IPF.Contact"),
        ("notes", "IPF.StickyNote"),
        ("tasks", "IPF.Task"),
        ("inbox", "IPF.Note"),
    ] {
        let r = dst
            .post(
                "/folders",
                &json!({"displayName": format!("Restore-{folder}"), "type": class}),
            )
            .await;
        let v: Value = r.json().await.expect("json");
        targets.insert(folder, v["id"].as_str().expect("id").to_owned());
    }
    for (folder, data) in &exported {
        let r = ctx
            .http
            .post(&url)
            .json(&json!({"FolderId": targets[folder], "Mode": "create", "Data": data}))
            .send()
            .await
            .expect("import");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let v: Value = r.json().await.expect("json");
        assert!(v["itemId"].is_string() && v["changeKey"].is_string());
    }
    assert!(
        ctx.sim.invitations().is_empty(),
        "an import sends no meeting mail"
    );

    // Every imported item equals its source: properties, exceptions, attachments, photos.
    let src_dump = ctx.sim.dump_pim(&src_user).expect("dump");
    let dst_dump = ctx.sim.dump_pim(&dst_user).expect("dump");
    let strip = |i: &ItemDump| {
        (
            i.class.clone(),
            i.props.clone(),
            i.categories.clone(),
            i.attachments.clone(),
            i.photo_sha256.clone(),
            i.exceptions.clone(),
        )
    };
    let restored: Vec<_> = dst_dump
        .items
        .iter()
        .filter(|i| i.folder_path.starts_with("Restore-"))
        .map(strip)
        .collect();
    let wanted: Vec<_> = src_dump
        .items
        .iter()
        .filter(|i| ["Calendar", "Contacts", "Notes", "Tasks"].contains(&i.folder_path.as_str()))
        .map(strip)
        .collect();
    assert_eq!(restored.len(), wanted.len());
    for w in &wanted {
        assert!(restored.contains(w), "{w:?} not restored");
    }
    assert!(
        restored.iter().any(|r| !r.5.is_empty()),
        "a series with exceptions came along"
    );
    assert!(restored.iter().any(|r| r.4.is_some()), "a photo came along");
    assert_eq!(dst_dump.items.len(), before_dst.items.len() + wanted.len());
    // Messages: the same MIME.
    let src_mail = ctx.sim.dump_mailbox(&src_user).expect("dump");
    let dst_mail = ctx.sim.dump_mailbox(&dst_user).expect("dump");
    let restored_mime: BTreeSet<String> = dst_mail
        .messages
        .iter()
        .filter(|m| m.folder_path == "Restore-inbox")
        .map(|m| m.mime_sha256.clone())
        .collect();
    assert_eq!(restored_mime.len(), 3);
    for sha in &restored_mime {
        assert!(src_mail.messages.iter().any(|m| &m.mime_sha256 == sha));
    }
}

#[tokio::test]
async fn import_urls_need_no_token_refuse_one_and_expire_and_update_checks_the_change_key() {
    let mut cfg = full();
    cfg.mailbox_api.import_session_lifetime = Duration::from_millis(800);
    let ctx = common::start(cfg).await;
    let (u, _) = two_users(&ctx);
    let m = mailbox(&ctx, &u).await;
    let notes = m.folder("notes").await;
    let fid = notes["id"].as_str().expect("id").to_owned();
    let items = m.all(&format!("/folders/{fid}/items")).await;
    let id = items[0]["id"].as_str().expect("id").to_owned();
    let v: Value = m
        .post("/exportItems", &json!({"itemIds": [id]}))
        .await
        .json()
        .await
        .expect("json");
    let data = values(&v)[0]["data"].as_str().expect("data").to_owned();
    let ck = values(&v)[0]["changeKey"].as_str().expect("ck").to_owned();
    let s: Value = m
        .post("/createImportSession", &json!({}))
        .await
        .json()
        .await
        .expect("json");
    let url = s["importUrl"].as_str().expect("url").to_owned();

    let r = ctx
        .http
        .post(&url)
        .bearer_auth(&ctx.token)
        .json(&json!({"FolderId": fid, "Mode": "create", "Data": data}))
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), 401, "an Authorization header is refused");
    let bad_token = url.replace("authtoken=", "authtoken=x");
    let r = ctx
        .http
        .post(&bad_token)
        .json(&json!({"FolderId": fid, "Mode": "create", "Data": data}))
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), 401);
    let r = ctx
        .http
        .post(&url)
        .json(&json!({"FolderId": fid, "Mode": "create", "Data": data, "ItemId": id}))
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), 400, "no ItemId in create mode");
    let r = ctx
        .http
        .post(&url)
        .json(&json!({"FolderId": fid, "Mode": "create", "Data": "bm90IGEgc3RyZWFt"}))
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), 400, "not an exported item");
    // Update mode: the change key must be the item's current one.
    let r = ctx.http.post(&url).json(&json!({"FolderId": fid, "Mode": "update", "Data": data, "ItemId": id, "ChangeKey": "stale"})).send().await.expect("import");
    assert_eq!(r.status(), 409);
    let r = ctx.http.post(&url).json(&json!({"FolderId": fid, "Mode": "update", "Data": data, "ItemId": id, "ChangeKey": ck})).send().await.expect("import");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["itemId"], id.as_str());
    assert_ne!(v["changeKey"], ck.as_str());
    tokio::time::sleep(Duration::from_millis(900)).await;
    let r = ctx
        .http
        .post(&url)
        .json(&json!({"FolderId": fid, "Mode": "create", "Data": data}))
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), 401, "the import URL expired");
    let counts = ctx.sim.counters();
    assert_eq!(counts.kind("import_item").requests, 7);
    assert_eq!(counts.kind("export_items").requests, 1);
    let _ = STANDARD.decode(&data).expect("data is base64");
}

#[tokio::test]
async fn permissions_per_endpoint() {
    // Export without import: export works, import sessions do not.
    let ctx = common::start(cfg_with(&[
        roles::MAILBOX_FOLDER_READ_ALL,
        roles::MAILBOX_ITEM_READ_ALL,
        roles::MAILBOX_ITEM_EXPORT_ALL,
    ]))
    .await;
    let u = ctx.mailbox_user();
    let m = mailbox(&ctx, &u).await;
    let f = m.folder("contacts").await;
    let fid = f["id"].as_str().expect("id");
    let items = m.all(&format!("/folders/{fid}/items")).await;
    let r = m
        .post("/exportItems", &json!({"itemIds": [items[0]["id"]]}))
        .await;
    assert_eq!(r.status(), 200);
    let (s, code, _) = error_code(m.post("/createImportSession", &json!({})).await).await;
    assert_eq!((s, code.as_str()), (403, "ErrorAccessDenied"));
    let (s, _, _) = error_code(
        m.post("/folders", &json!({"displayName": "x", "type": "IPF.Note"}))
            .await,
    )
    .await;
    assert_eq!(s, 403, "creating folders needs MailboxFolder.ReadWrite.All");
    // Mail permissions only: nothing of the API.
    let ctx = common::start(cfg_with(&[])).await;
    let u = ctx.mailbox_user();
    let m = mailbox(&ctx, &u).await;
    for (path, post) in [
        ("/folders", false),
        ("/folders/inbox/items", false),
        ("/exportItems", true),
    ] {
        let r = if post {
            m.post(path, &json!({"itemIds": ["x"]})).await
        } else {
            m.ctx.get(&m.path(path)).await
        };
        let (s, _, _) = error_code(r).await;
        assert_eq!(s, 403, "{path}");
    }
}

#[tokio::test]
async fn every_call_is_one_request_against_the_mailbox_budget() {
    let mut cfg = full();
    cfg.limits.requests_per_window = 5;
    let ctx = common::start(cfg).await;
    let (u, other) = two_users(&ctx);
    let m = mailbox(&ctx, &u).await; // 1: settings/exchange is a call on the mailbox too
    let f = m.folder("notes").await; // 2
    let fid = f["id"].as_str().expect("id").to_owned();
    let items = m.all(&format!("/folders/{fid}/items")).await; // 3
    let ids: Vec<&Value> = items.iter().map(|i| &i["id"]).collect();
    assert_eq!(
        m.post("/exportItems", &json!({"itemIds": ids}))
            .await
            .status(),
        200
    ); // 4
    let s: Value = m
        .post("/createImportSession", &json!({}))
        .await
        .json()
        .await
        .expect("json"); // 5
    let url = s["importUrl"].as_str().expect("url");
    let r = ctx
        .http
        .post(url)
        .json(&json!({"FolderId": fid, "Mode": "create", "Data": "AA=="}))
        .send()
        .await
        .expect("import");
    assert_eq!(
        r.status(),
        429,
        "the import call is the 6th request on this mailbox"
    );
    assert!(r.headers().contains_key("retry-after"));
    let (s, code, _) = error_code(m.post("/exportItems", &json!({"itemIds": ids})).await).await;
    assert_eq!((s, code.as_str()), (429, "ApplicationThrottled"));
    // Another mailbox has its own budget.
    let o = mailbox(&ctx, &other).await;
    assert_eq!(o.ctx.get(&o.path("/folders/notes")).await.status(), 200);
    // Injected faults hit the import URL like any call.
    let s: Value = o
        .post("/createImportSession", &json!({}))
        .await
        .json()
        .await
        .expect("json");
    let url = s["importUrl"].as_str().expect("url").to_owned();
    ctx.sim.set_faults(atlas_sim::FaultConfig {
        error_rate: 1.0,
        retry_after_secs: 1,
        ..atlas_sim::FaultConfig::default()
    });
    let r = ctx
        .http
        .post(&url)
        .json(&json!({"FolderId": "notes", "Mode": "create", "Data": "AA=="}))
        .send()
        .await
        .expect("import");
    assert!(
        [429, 503, 504].contains(&r.status().as_u16()),
        "{}",
        r.status()
    );
}

/// The admin API over HTTP mirrors the in-process calls for items, exceptions and
/// invitations, so a test driving a separate `atlas sim serve` can do the same.
#[tokio::test]
async fn admin_http_for_items_occurrences_and_invitations() {
    let ctx = common::start(cfg_with(&[roles::CALENDARS_READ])).await;
    let u = ctx.mailbox_user();
    let admin = |p: &str| format!("{}/_admin/{p}", ctx.sim.base_url());
    let r = ctx
        .http
        .post(admin(&format!("mailboxes/{u}/items")))
        .json(&json!({"folder": "Calendar", "class": "IPM.Appointment", "props": {
            "subject": "Weekly", "isAllDay": false,
            "start": {"dateTime": "2025-03-03T09:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2025-03-03T09:30:00.0000000", "timeZone": "UTC"},
            "recurrence": {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                           "range": {"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 3}}}}))
        .send()
        .await
        .expect("add");
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = ctx
        .http
        .put(admin(&format!("mailboxes/{u}/items/{id}/occurrences")))
        .json(&json!({"original_start": "2025-03-10T09:00:00Z", "change": null}))
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status(), 200);
    let r = ctx
        .http
        .patch(admin(&format!("mailboxes/{u}/items/{id}")))
        .json(&json!({"subject": "Weekly sync", "categories": ["Projects"]}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let dump: atlas_sim::PimDump = ctx
        .http
        .get(admin(&format!("mailboxes/{u}/pim")))
        .send()
        .await
        .expect("dump")
        .json()
        .await
        .expect("json");
    let item = dump.items.iter().find(|i| i.id == id).expect("item");
    assert_eq!(item.props["subject"], "Weekly sync");
    assert_eq!(item.categories, ["Projects"]);
    assert_eq!(item.exceptions.len(), 1);
    assert!(item.exceptions[0].cancelled);
    let inst = ctx
        .get_json(&format!("/users/{u}/events/{id}/instances?startDateTime=2025-01-01T00:00:00Z&endDateTime=2025-12-31T00:00:00Z"))
        .await;
    assert_eq!(values(&inst).len(), 2);
    let inv: Value = ctx
        .http
        .get(admin("invitations"))
        .send()
        .await
        .expect("invitations")
        .json()
        .await
        .expect("json");
    assert_eq!(inv, json!([]), "admin changes send no meeting mail");
    let r = ctx
        .http
        .delete(admin(&format!("mailboxes/{u}/items/{id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    assert!(
        ctx.sim
            .dump_pim(&u)
            .expect("dump")
            .items
            .iter()
            .all(|i| i.id != id)
    );
}

/// The import's `FolderId` is "the **id** property returned by List folders"
/// (resources/mailbox-import-export-api-overview.md). The simulator's `mailFolders` ids are
/// the same text, so it takes a folder id as a mailboxFolder id once this API's folder
/// endpoints have returned it: a mail folder created and known through `mailFolders` only,
/// and a well-known name, are refused.
#[tokio::test]
async fn an_import_takes_the_folder_id_list_folders_returns() {
    let mut cfg = full();
    cfg.granted_roles.insert(roles::MAIL_READ_WRITE.to_owned());
    let ctx = common::start(cfg).await;
    let (u, _) = two_users(&ctx);
    let m = mailbox(&ctx, &u).await;
    let notes = m.folder("notes").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let items = m.all(&format!("/folders/{notes}/items")).await;
    let id = items[0]["id"].as_str().expect("id").to_owned();
    let v: Value = m
        .post("/exportItems", &json!({"itemIds": [id]}))
        .await
        .json()
        .await
        .expect("json");
    let data = values(&v)[0]["data"].as_str().expect("data").to_owned();
    let s: Value = m
        .post("/createImportSession", &json!({}))
        .await
        .json()
        .await
        .expect("json");
    let url = s["importUrl"].as_str().expect("url").to_owned();
    let import = |folder: String| {
        let (http, url, data) = (ctx.http.clone(), url.clone(), data.clone());
        async move {
            http.post(&url)
                .json(&json!({"FolderId": folder, "Mode": "create", "Data": data}))
                .send()
                .await
                .expect("import")
        }
    };
    let created = ctx
        .post_json(
            &format!("/users/{u}/mailFolders"),
            &json!({"displayName": "Made through mailFolders"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let rest_id = created.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for other in [rest_id.clone(), "notes".to_owned()] {
        let (status, code, _) = error_code(import(other.clone()).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "ErrorInvalidIdMalformed"),
            "{other}"
        );
    }
    assert_eq!(import(notes.clone()).await.status(), 200);
    // Listed through this API, the new folder's id is a mailboxFolder id.
    let listed = m
        .all("/folders")
        .await
        .into_iter()
        .find(|f| f["displayName"] == "Made through mailFolders")
        .expect("listed");
    let listed_id = listed["id"].as_str().expect("id").to_owned();
    assert_eq!(import(listed_id).await.status(), 200);
}
