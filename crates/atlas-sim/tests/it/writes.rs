use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::common::{self, error_code};

const MARK: &str = "String {6b9a8e3c-1d2f-4a5b-9c8d-7e6f5a4b3c2d} Name AtlasRestoreId";

#[tokio::test]
async fn create_folder_and_conflict() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let r = ctx
        .post_json(
            &format!("/users/{u}/mailFolders"),
            &json!({"displayName": "Restored"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let f: Value = r.json().await.expect("json");
    let r = ctx
        .post_json(
            &format!(
                "/users/{u}/mailFolders/{}/childFolders",
                f["id"].as_str().expect("id")
            ),
            &json!({"displayName": "Child"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let (s, code, _) = error_code(
        ctx.post_json(
            &format!("/users/{u}/mailFolders"),
            &json!({"displayName": "Restored"}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "ErrorFolderExists"));
}

#[tokio::test]
async fn create_message_flags_dates_and_extended_property_filter() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let body = json!({
        "subject": "Restored ✓",
        "body": {"contentType": "html", "content": "<p>hi</p>"},
        "from": {"emailAddress": {"name": "A", "address": "a@example.com"}},
        "toRecipients": [{"emailAddress": {"name": "B", "address": "b@example.com"}}],
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},
            {"id": "SystemTime 0x0E06", "value": "2021-05-01T10:00:00Z"},
            {"id": "SystemTime 0x0039", "value": "2021-05-01T09:59:00Z"},
            {"id": MARK, "value": "abc123"}
        ]
    });
    let r = ctx
        .post_json(&format!("/users/{u}/mailFolders/inbox/messages"), &body)
        .await;
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.expect("json");
    assert_eq!(m["isDraft"], false);
    assert_eq!(m["isRead"], true);
    assert_eq!(m["receivedDateTime"], "2021-05-01T10:00:00Z");
    assert_eq!(m["sentDateTime"], "2021-05-01T09:59:00Z");

    let draft = ctx
        .post_json(
            &format!("/users/{u}/messages"),
            &json!({"subject": "draft"}),
        )
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(draft["isDraft"], true);
    let drafts = ctx
        .get_json(
            "/users/"
                .to_owned()
                .as_str()
                .replace("/users/", &format!("/users/{u}/mailFolders/drafts"))
                .as_str(),
        )
        .await;
    assert!(drafts["totalItemCount"].as_u64().expect("count") >= 1);

    let filter = format!(
        "singleValueExtendedProperties/Any(ep: ep/id eq '{MARK}' and ep/value eq 'abc123')"
    );
    let found = ctx
        .get_json(&format!(
            "/users/{u}/mailFolders/inbox/messages?$filter={}&$select=id",
            urlenc(&filter)
        ))
        .await;
    assert_eq!(found["value"].as_array().map(Vec::len), Some(1));
    let id = found["value"][0]["id"].as_str().expect("id");
    let expand = format!("singleValueExtendedProperties($filter=id eq '{MARK}')");
    let x = ctx
        .get_json(&format!(
            "/users/{u}/messages/{id}?$expand={}",
            urlenc(&expand)
        ))
        .await;
    assert_eq!(x["singleValueExtendedProperties"][0]["value"], "abc123");
}

fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn attachments_small_post_and_upload_session() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let m: Value = ctx
        .post_json(
            &format!("/users/{u}/mailFolders/inbox/messages"),
            &json!({"subject": "with files"}),
        )
        .await
        .json()
        .await
        .expect("json");
    let mid = m["id"].as_str().expect("id").to_owned();
    let small = ctx
        .post_json(&format!("/users/{u}/messages/{mid}/attachments"), &json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt", "contentBytes": STANDARD.encode(b"hello")}))
        .await;
    assert_eq!(small.status(), 201);

    let (s, code, _) = error_code(
        ctx.post_json(
            &format!("/users/{u}/messages/{mid}/attachments/createUploadSession"),
            &json!({"AttachmentItem": {"attachmentType": "file", "name": "tiny", "size": 10}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
    );

    let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
    let r = ctx.post_json(&format!("/users/{u}/messages/{mid}/attachments/createUploadSession"), &json!({"AttachmentItem": {"attachmentType": "file", "name": "big.bin", "size": data.len()}})).await;
    assert_eq!(r.status(), 201);
    let sess: Value = r.json().await.expect("json");
    assert_eq!(sess["nextExpectedRanges"][0], "0-");
    let upload = sess["uploadUrl"].as_str().expect("uploadUrl").to_owned();
    let chunk = 2 * 1024 * 1024;
    let mut start = 0;
    while start < data.len() {
        let end = (start + chunk).min(data.len());
        let r = ctx
            .http
            .put(&upload)
            .header(
                "Content-Range",
                format!("bytes {start}-{}/{}", end - 1, data.len()),
            )
            .header("Content-Type", "application/octet-stream")
            .body(data[start..end].to_vec())
            .send()
            .await
            .expect("put");
        if end < data.len() {
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["nextExpectedRanges"][0], end.to_string());
        } else {
            assert_eq!(r.status(), 201);
            assert!(r.headers().contains_key("location"));
        }
        start = end;
    }
    let atts = ctx
        .get_json(&format!(
            "/users/{u}/messages/{mid}/attachments?$select=id,name,size"
        ))
        .await;
    let big = atts["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|a| a["name"] == "big.bin")
        .expect("big");
    assert_eq!(big["size"].as_u64(), Some(data.len() as u64));
    let raw = ctx
        .get(&format!(
            "/users/{u}/messages/{mid}/attachments/{}/$value",
            big["id"].as_str().expect("id")
        ))
        .await
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(raw.to_vec(), data);
}

#[tokio::test]
async fn mime_create_request_cap_batch_and_report() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let mime = "From: a@example.com\r\nTo: b@example.com\r\nSubject: MIME import\r\nDate: Sun, 28 Feb 2021 07:15:00 +0000\r\nMessage-ID: <x1@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n";
    let r = ctx
        .http
        .post(ctx.url(&format!("/users/{u}/mailFolders/inbox/messages")))
        .bearer_auth(&ctx.token)
        .header("Content-Type", "text/plain")
        .body(STANDARD.encode(mime))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.expect("json");
    assert_eq!(m["subject"], "MIME import");
    assert_eq!(m["isDraft"], true);
    assert_eq!(m["sentDateTime"], "2021-02-28T07:15:00Z");
    let back = ctx
        .get(&format!(
            "/users/{u}/messages/{}/$value",
            m["id"].as_str().expect("id")
        ))
        .await
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(back.as_ref(), mime.as_bytes());
    let r = ctx
        .http
        .post(ctx.url(&format!("/users/{u}/messages")))
        .bearer_auth(&ctx.token)
        .header("Content-Type", "text/plain")
        .body("@@not base64@@")
        .send()
        .await
        .expect("post");
    let (s, code, _) = error_code(r).await;
    assert_eq!(
        (s, code.as_str()),
        (400, "ErrorMimeContentInvalidBase64String")
    );

    let huge = json!({"subject": "x", "body": {"contentType": "text", "content": "a".repeat(5 * 1024 * 1024)}});
    let (s, code, _) =
        error_code(ctx.post_json(&format!("/users/{u}/messages"), &huge).await).await;
    assert_eq!((s, code.as_str()), (400, "BadRequest"));

    let batch = json!({"requests": [
        {"id": "1", "method": "GET", "url": format!("/users/{u}/mailFolders/inbox")},
        {"id": "2", "method": "GET", "url": "/users/nobody@nowhere/mailFolders"},
        {"id": "3", "method": "GET", "url": format!("/users/{u}")}
    ]});
    let r = ctx.post_json("/$batch", &batch).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let status = |id: &str| {
        v["responses"]
            .as_array()
            .expect("responses")
            .iter()
            .find(|x| x["id"] == id)
            .expect(id)["status"]
            .as_u64()
    };
    assert_eq!(
        (status("1"), status("2"), status("3")),
        (Some(200), Some(404), Some(200))
    );
    let too_many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    assert_eq!(
        ctx.post_json("/$batch", &json!({"requests": too_many}))
            .await
            .status(),
        400
    );

    let r = ctx.get("/reports/getMailboxUsageDetail(period='D7')").await;
    assert_eq!(r.status(), 302);
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_owned();
    let csv = ctx
        .http
        .get(loc)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let header = csv.lines().next().expect("header");
    assert!(header.starts_with("Report Refresh Date,User Principal Name,Display Name,Is Deleted"));
    assert_eq!(header.split(',').count(), 17);
    assert_eq!(
        csv.lines().count() - 1,
        ctx.sim.users().iter().filter(|u| u.has_mailbox).count()
    );
}

#[tokio::test]
async fn admin_http_api_mirrors_the_in_process_api() {
    let ctx = common::small().await;
    let base = ctx.sim.base_url();
    let info: Value = ctx
        .http
        .get(format!("{base}/_admin/info"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(info["client_id"], ctx.sim.client_id());
    let u = ctx.mailbox_user();
    let r = ctx
        .http
        .post(format!("{base}/_admin/mailboxes/{u}/messages"))
        .json(&json!({"folder": "Inbox/Projects", "message": {"subject": "via http", "body": "b"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let dump: Value = ctx
        .http
        .get(format!("{base}/_admin/mailboxes/{u}?mime=false"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let m = dump["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["id"] == id.as_str())
        .expect("added message");
    assert_eq!(m["folder_path"], "Inbox/Projects");
    assert!(m["mime"].is_null() && m["mime_sha256"].is_string());
    let r = ctx
        .http
        .put(format!("{base}/_admin/faults"))
        .json(&json!({"latency": 5}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(
        ctx.sim.faults().latency,
        std::time::Duration::from_millis(5)
    );
    let c: Value = ctx
        .http
        .get(format!("{base}/_admin/counters"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(
        c["by_kind"]["token"]["requests"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
    let r = ctx
        .http
        .delete(format!("{base}/_admin/mailboxes/{u}/messages/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    let (s, _, _) = error_code(ctx.get(&format!("/users/{u}/messages/{id}")).await).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn batch_depends_on_failure_gives_424_and_inner_mime_is_base64() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let id = ctx.sim.dump_mailbox(&u).expect("dump").messages[0]
        .id
        .clone();
    let batch = json!({"requests": [
        {"id": "a", "method": "GET", "url": "/users/nobody@nowhere/mailFolders"},
        {"id": "b", "method": "GET", "url": format!("/users/{u}"), "dependsOn": ["a"]},
        {"id": "c", "method": "GET", "url": format!("/users/{u}/messages/{id}/$value")}
    ]});
    let v: Value = ctx
        .post_json("/$batch", &batch)
        .await
        .json()
        .await
        .expect("json");
    let get = |id: &str| {
        v["responses"]
            .as_array()
            .expect("responses")
            .iter()
            .find(|x| x["id"] == id)
            .expect(id)
            .clone()
    };
    assert_eq!(get("a")["status"], 404);
    assert_eq!(get("b")["status"], 424);
    assert_eq!(get("c")["status"], 200);
    let mime = STANDARD
        .decode(get("c")["body"].as_str().expect("base64 body"))
        .expect("b64");
    assert!(String::from_utf8_lossy(&mime).contains("MIME-Version: 1.0"));
}
