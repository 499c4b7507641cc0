use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{self, error_code};
use atlas_sim::{MessageUpdate, NewMessage};

/// Runs one delta round to completion; returns the items and the deltaLink.
async fn round(ctx: &common::Ctx, first: &str, prefer: &str) -> (Vec<Value>, String) {
    let mut url = first.to_owned();
    let mut items = Vec::new();
    loop {
        let r = ctx.get_with(&url, &[("Prefer", prefer)]).await;
        assert_eq!(r.status(), 200, "{url}");
        let page: Value = r.json().await.expect("json");
        let n = page["value"].as_array().expect("value").len();
        assert!(n <= 5, "page larger than odata.maxpagesize");
        items.extend(page["value"].as_array().expect("value").iter().cloned());
        assert!(
            page["@odata.nextLink"].is_null() != page["@odata.deltaLink"].is_null(),
            "exactly one link"
        );
        if let Some(d) = page["@odata.deltaLink"].as_str() {
            return (items, d.to_owned());
        }
        page["@odata.nextLink"]
            .as_str()
            .expect("next")
            .clone_into(&mut url);
    }
}

fn ids(items: &[Value], removed: bool) -> BTreeSet<String> {
    items
        .iter()
        .filter(|i| i.get("@removed").is_some() == removed)
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn delta_reports_adds_updates_deletes_and_moves() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let prefer = "odata.maxpagesize=5";
    let first = format!("/users/{u}/mailFolders/inbox/messages/delta?$select=subject,isRead");
    let (items, delta) = round(&ctx, &first, prefer).await;
    let inbox = ctx.get_json(&format!("/users/{u}/mailFolders/inbox")).await;
    assert_eq!(
        ids(&items, false).len() as u64,
        inbox["totalItemCount"].as_u64().expect("count")
    );
    for i in &items {
        assert_eq!(i["@odata.type"], "#microsoft.graph.message");
        assert!(
            i.get("subject").is_some() && i.get("body").is_none(),
            "$select carried in the token"
        );
    }
    let (again, delta) = round(&ctx, &delta, prefer).await;
    assert!(again.is_empty(), "no changes, no items");

    let existing: Vec<String> = ids(&items, false).into_iter().collect();
    let added = ctx
        .sim
        .add_message(&u, "inbox", NewMessage::text("Fresh", "hello"))
        .expect("add");
    ctx.sim
        .update_message(
            &u,
            &existing[0],
            &MessageUpdate {
                is_read: Some(false),
                ..MessageUpdate::default()
            },
        )
        .expect("update");
    ctx.sim.delete_message(&u, &existing[1]).expect("delete");
    let moved_new_id = ctx
        .sim
        .move_message(&u, &existing[2], "archive")
        .expect("move");
    let (changes, _) = round(&ctx, &delta, prefer).await;
    let live = ids(&changes, false);
    let removed = ids(&changes, true);
    assert!(live.contains(&added) && live.contains(&existing[0]));
    assert!(removed.contains(&existing[1]) && removed.contains(&existing[2]));
    assert!(
        changes
            .iter()
            .filter(|c| c.get("@removed").is_some())
            .all(|c| c["@removed"]["reason"] == "deleted")
    );
    assert_ne!(moved_new_id, existing[2], "regular ids change on move");
}

#[tokio::test]
async fn immutable_ids_survive_moves() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let imm = "IdType=\"ImmutableId\", odata.maxpagesize=5";
    let (items, _) = round(
        &ctx,
        &format!("/users/{u}/mailFolders/inbox/messages/delta?$select=subject"),
        imm,
    )
    .await;
    let id = items[0]["id"].as_str().expect("id").to_owned();
    ctx.sim.move_message(&u, &id, "archive").expect("move");
    let r = ctx
        .get_with(
            &format!("/users/{u}/messages/{id}?$select=parentFolderId"),
            &[("Prefer", "IdType=\"ImmutableId\"")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let (archive_items, _) = round(
        &ctx,
        &format!("/users/{u}/mailFolders/archive/messages/delta?$select=subject"),
        imm,
    )
    .await;
    assert!(ids(&archive_items, false).contains(&id));
}

#[tokio::test]
async fn expired_delta_tokens_answer_410_sync_state_not_found() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let (_, delta) = round(
        &ctx,
        &format!("/users/{u}/mailFolders/inbox/messages/delta"),
        "odata.maxpagesize=5",
    )
    .await;
    ctx.sim.expire_delta_tokens();
    let (s, code, _) = error_code(ctx.get(&delta).await).await;
    assert_eq!((s, code.as_str()), (410, "SyncStateNotFound"));
    // A fresh initial round works again.
    let (items, _) = round(
        &ctx,
        &format!("/users/{u}/mailFolders/inbox/messages/delta"),
        "odata.maxpagesize=5",
    )
    .await;
    assert!(!items.is_empty());
}
