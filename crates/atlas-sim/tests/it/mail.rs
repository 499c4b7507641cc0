use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::common::{self, error_code};
use atlas_sim::{SimConfig, Simulator};

async fn all_pages(ctx: &common::Ctx, first: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut url = first.to_owned();
    loop {
        let page = ctx.get_json(&url).await;
        out.extend(page["value"].as_array().expect("value").iter().cloned());
        match page["@odata.nextLink"].as_str() {
            Some(n) => n.clone_into(&mut url),
            None => return out,
        }
    }
}

#[tokio::test]
async fn folders_top_level_hidden_children_and_well_known_names() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let first = ctx.get_json(&format!("/users/{u}/mailFolders")).await;
    assert_eq!(
        first["value"].as_array().map(Vec::len),
        Some(10),
        "default page size 10"
    );
    assert!(first["@odata.nextLink"].is_string());
    let visible = all_pages(&ctx, &format!("/users/{u}/mailFolders")).await;
    let with_hidden = all_pages(
        &ctx,
        &format!("/users/{u}/mailFolders?includeHiddenFolders=true"),
    )
    .await;
    assert!(with_hidden.len() > visible.len());
    assert!(with_hidden.iter().any(|f| f["isHidden"] == true));

    let inbox = ctx.get_json(&format!("/users/{u}/mailFolders/inbox")).await;
    assert_eq!(inbox["displayName"], "Inbox");
    let inbox_id = inbox["id"].as_str().expect("id");
    let root = ctx
        .get_json(&format!("/users/{u}/mailFolders/msgfolderroot"))
        .await;
    assert_eq!(inbox["parentFolderId"], root["id"]);
    // Descend Inbox/Projects/Alpha/2024 through childFolders.
    let mut path = format!("/users/{u}/mailFolders/{inbox_id}");
    for name in ["Projects", "Alpha", "2024"] {
        let kids = ctx.get_json(&format!("{path}/childFolders")).await;
        let f = kids["value"]
            .as_array()
            .expect("value")
            .iter()
            .find(|f| f["displayName"] == name)
            .expect(name)
            .clone();
        path = format!("{path}/childFolders/{}", f["id"].as_str().expect("id"));
        let direct = ctx
            .get_json(&format!(
                "/users/{u}/mailFolders/{}",
                f["id"].as_str().expect("id")
            ))
            .await;
        assert_eq!(direct["displayName"], name);
    }
    // Counts agree with the messages listing.
    let msgs = all_pages(
        &ctx,
        &format!("/users/{u}/mailFolders/inbox/messages?$select=id&$top=7"),
    )
    .await;
    assert_eq!(inbox["totalItemCount"].as_u64(), Some(msgs.len() as u64));
}

#[tokio::test]
async fn message_json_mime_and_attachments_agree() {
    let ctx = common::start(SimConfig::with_size(11, 3, 60)).await;
    let u = ctx.mailbox_user();
    let msgs = all_pages(&ctx, &format!("/users/{u}/messages?$top=50")).await;
    let (mut files, mut items, mut inline) = (0, 0, 0);
    for m in &msgs {
        for k in [
            "id",
            "subject",
            "receivedDateTime",
            "sentDateTime",
            "body",
            "from",
            "toRecipients",
            "internetMessageId",
            "isRead",
            "isDraft",
            "parentFolderId",
            "changeKey",
            "flag",
        ] {
            assert!(m.get(k).is_some(), "{k} missing");
        }
        let id = m["id"].as_str().expect("id");
        let r = ctx.get(&format!("/users/{u}/messages/{id}/$value")).await;
        assert_eq!(r.status(), 200);
        let mime = r.bytes().await.expect("bytes");
        // CRLF only, never a bare LF.
        assert!(
            !mime.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
            "bare LF in MIME"
        );
        let text = String::from_utf8_lossy(&mime);
        assert!(text.contains(&format!(
            "Message-ID: {}",
            m["internetMessageId"].as_str().expect("mid")
        )));
        assert!(text.contains("MIME-Version: 1.0"));
        let atts = ctx
            .get_json(&format!("/users/{u}/messages/{id}/attachments"))
            .await;
        for a in atts["value"].as_array().expect("value") {
            let aid = a["id"].as_str().expect("id");
            match a["@odata.type"].as_str().expect("type") {
                "#microsoft.graph.fileAttachment" => {
                    files += 1;
                    if a["isInline"] == true {
                        inline += 1;
                        assert!(a["contentId"].is_string());
                        assert!(text.contains(&format!(
                            "Content-ID: <{}>",
                            a["contentId"].as_str().expect("cid")
                        )));
                    }
                    let raw = ctx
                        .get(&format!(
                            "/users/{u}/messages/{id}/attachments/{aid}/$value"
                        ))
                        .await
                        .bytes()
                        .await
                        .expect("bytes");
                    assert_eq!(
                        STANDARD
                            .decode(a["contentBytes"].as_str().expect("bytes"))
                            .expect("b64"),
                        raw.to_vec()
                    );
                    assert_eq!(a["size"].as_u64(), Some(raw.len() as u64));
                }
                "#microsoft.graph.itemAttachment" => {
                    items += 1;
                    assert!(a["contentType"].is_null());
                    let x = ctx.get_json(&format!("/users/{u}/messages/{id}/attachments/{aid}?$expand=microsoft.graph.itemattachment/item")).await;
                    assert_eq!(x["item"]["@odata.type"], "#microsoft.graph.message");
                    assert!(text.contains("Content-Type: message/rfc822"));
                }
                "#microsoft.graph.referenceAttachment" => {
                    let (s, _, _) = error_code(
                        ctx.get(&format!(
                            "/users/{u}/messages/{id}/attachments/{aid}/$value"
                        ))
                        .await,
                    )
                    .await;
                    assert_eq!(s, 405);
                }
                other => panic!("unexpected attachment type {other}"),
            }
        }
    }
    assert!(
        files > 0 && items > 0 && inline > 0,
        "files {files} items {items} inline {inline}"
    );
}

#[tokio::test]
async fn same_seed_gives_identical_tenant_and_mime_failure_is_injectable() {
    let a = Simulator::start(SimConfig::with_size(5, 2, 15))
        .await
        .expect("a");
    let b = Simulator::start(SimConfig::with_size(5, 2, 15))
        .await
        .expect("b");
    assert_eq!(a.tenant_id(), b.tenant_id());
    for u in a.users().iter().filter(|u| u.has_mailbox) {
        let (da, db) = (
            a.dump_mailbox(&u.id).expect("dump"),
            b.dump_mailbox(&u.id).expect("dump"),
        );
        let sha = |d: &atlas_sim::MailboxDump| {
            d.messages
                .iter()
                .map(|m| m.mime_sha256.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(sha(&da), sha(&db));
        assert_eq!(da.folders.len(), db.folders.len());
        // Calendars, contacts, tasks, notes and configuration too.
        let (pa, pb) = (
            a.dump_pim(&u.id).expect("dump"),
            b.dump_pim(&u.id).expect("dump"),
        );
        assert!(!pa.items.is_empty());
        assert_eq!(pa, pb);
    }
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let dump = ctx.sim.dump_mailbox(&u).expect("dump");
    let id = &dump.messages[0].id;
    ctx.sim.set_mime_failure(&u, id, true).expect("toggle");
    let (s, _, _) = error_code(ctx.get(&format!("/users/{u}/messages/{id}/$value")).await).await;
    assert_eq!(s, 500);
    let (s, code, _) =
        error_code(ctx.get(&format!("/users/{u}/messages/AAMkAGI2nope")).await).await;
    assert_eq!((s, code.as_str()), (404, "ErrorItemNotFound"));
}

#[tokio::test]
async fn responses_carry_request_ids_and_echo_client_request_id() {
    let ctx = common::small().await;
    let r = ctx
        .get_with("/users", &[("client-request-id", "abc-123")])
        .await;
    assert_eq!(
        r.headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("abc-123")
    );
    assert!(r.headers().contains_key("request-id"));
    assert!(r.headers().contains_key("date"));
}
