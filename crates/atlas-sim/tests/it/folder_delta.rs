//! `GET /users/{id}/mailFolders/delta` (api/mailfolder-delta.md, graph-api.md §4.4): the
//! documented round (nextLink → deltaLink, `Prefer: odata.maxpagesize`, `$select` kept in
//! the tokens, `id` always), `@removed` for deleted folders, and each variant the page
//! leaves open (§15.6) as a [`FolderDeltaMode`] knob.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{self, error_code};
use atlas_sim::{FolderDeltaMode, NewMessage, SimConfig, roles};

const PAGE: usize = 4;

/// Runs a folder delta round to its deltaLink; returns the entries and the deltaLink.
async fn round(ctx: &common::Ctx, first: &str) -> (Vec<Value>, String) {
    let mut url = first.to_owned();
    let mut items = Vec::new();
    let prefer = format!("odata.maxpagesize={PAGE}");
    loop {
        let r = ctx.get_with(&url, &[("Prefer", &prefer)]).await;
        assert_eq!(r.status(), 200, "{url}");
        let page: Value = r.json().await.expect("json");
        let value = page["value"].as_array().expect("value");
        assert!(value.len() <= PAGE, "page larger than odata.maxpagesize");
        items.extend(value.iter().cloned());
        assert!(
            page["@odata.nextLink"].is_null() != page["@odata.deltaLink"].is_null(),
            "exactly one link: {page}"
        );
        if let Some(d) = page["@odata.deltaLink"].as_str() {
            assert!(d.contains("/mailFolders/delta?$deltatoken="), "{d}");
            return (items, d.to_owned());
        }
        let next = page["@odata.nextLink"].as_str().expect("next");
        assert!(next.contains("$skiptoken="), "{next}");
        next.clone_into(&mut url);
    }
}

fn ids(items: &[Value], removed: bool) -> BTreeSet<String> {
    items
        .iter()
        .filter(|i| i.get("@removed").is_some() == removed)
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every folder below the root, walked with `mailFolders` and `childFolders`.
async fn walk(ctx: &common::Ctx, u: &str, hidden: bool, deep: bool) -> BTreeSet<String> {
    let q = if hidden {
        "?includeHiddenFolders=true&$top=100"
    } else {
        "?$top=100"
    };
    let mut out = BTreeSet::new();
    let mut todo = vec![format!("/users/{u}/mailFolders{q}")];
    while let Some(url) = todo.pop() {
        let page = ctx.get_json(&url).await;
        for f in page["value"].as_array().expect("value") {
            let id = f["id"].as_str().expect("id").to_owned();
            if deep && f["childFolderCount"].as_u64().unwrap_or(0) > 0 {
                todo.push(format!("/users/{u}/mailFolders/{id}/childFolders{q}"));
            }
            out.insert(id);
        }
    }
    out
}

async fn with_mode(mode: FolderDeltaMode) -> common::Ctx {
    let mut cfg = SimConfig::with_size(7, 4, 30);
    cfg.folder_delta = mode;
    common::start(cfg).await
}

#[tokio::test]
async fn a_round_lists_the_tree_then_only_folder_changes() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let (items, delta) = round(&ctx, &format!("/users/{u}/mailFolders/delta")).await;
    assert_eq!(
        ids(&items, false),
        walk(&ctx, &u, false, true).await,
        "default: the whole tree, hidden folders left out"
    );
    assert!(items.iter().all(|f| f["parentFolderId"].is_string()
        && f["displayName"].is_string()
        && f["totalItemCount"].is_u64()));
    let (again, delta) = round(&ctx, &delta).await;
    assert!(again.is_empty(), "no changes, no entries: {again:?}");

    let projects = ctx.sim.add_folder(&u, "inbox", "Projects 2").expect("add");
    let child = ctx.sim.add_folder(&u, &projects, "Child").expect("add");
    let (changes, delta) = round(&ctx, &delta).await;
    assert_eq!(
        ids(&changes, false),
        [projects.clone(), child.clone()].into()
    );
    ctx.sim
        .rename_folder(&u, "Inbox/Receipts", "Receipts 2025")
        .expect("rename");
    // A new message changes counts, not the folder (the default variant).
    ctx.sim
        .add_message(&u, "inbox", NewMessage::text("Fresh", "hello"))
        .expect("message");
    ctx.sim.delete_folder(&u, &projects).expect("delete");
    let (changes, _) = round(&ctx, &delta).await;
    let renamed: Vec<&Value> = changes
        .iter()
        .filter(|c| c.get("@removed").is_none())
        .collect();
    assert_eq!(renamed.len(), 1, "{changes:?}");
    assert_eq!(renamed[0]["displayName"], "Receipts 2025");
    assert_eq!(ids(&changes, true), [projects, child].into());
    for c in changes.iter().filter(|c| c.get("@removed").is_some()) {
        assert_eq!(c["@removed"]["reason"], "deleted");
    }
}

#[tokio::test]
async fn select_is_kept_in_the_tokens_and_id_always_comes_back() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let (items, delta) = round(
        &ctx,
        &format!("/users/{u}/mailFolders/delta?$select=displayName"),
    )
    .await;
    assert!(items.len() > PAGE, "more than one page");
    for f in &items {
        let keys: BTreeSet<&str> = f
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["displayName", "id"].into(), "{f}");
    }
    ctx.sim.add_folder(&u, "inbox", "New").expect("add");
    let (changes, _) = round(&ctx, &delta).await;
    assert_eq!(changes.len(), 1);
    assert!(changes[0].get("parentFolderId").is_none(), "{}", changes[0]);
    let (s, code, _) = error_code(
        ctx.get(&format!("/users/{u}/mailFolders/delta?$select=nope"))
            .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "RequestBroker--ParseUri"));
}

#[tokio::test]
async fn the_undocumented_variants_are_knobs() {
    let hidden = with_mode(FolderDeltaMode {
        include_hidden: true,
        ..FolderDeltaMode::default()
    })
    .await;
    let u = hidden.mailbox_user();
    let (items, _) = round(&hidden, &format!("/users/{u}/mailFolders/delta")).await;
    assert_eq!(ids(&items, false), walk(&hidden, &u, true, true).await);
    assert!(items.iter().any(|f| f["isHidden"] == true));

    let top = with_mode(FolderDeltaMode {
        whole_tree: false,
        ..FolderDeltaMode::default()
    })
    .await;
    let u = top.mailbox_user();
    let (items, _) = round(&top, &format!("/users/{u}/mailFolders/delta")).await;
    assert_eq!(ids(&items, false), walk(&top, &u, false, false).await);

    let content = with_mode(FolderDeltaMode {
        content_changes: true,
        ..FolderDeltaMode::default()
    })
    .await;
    let u = content.mailbox_user();
    let (_, delta) = round(&content, &format!("/users/{u}/mailFolders/delta")).await;
    content
        .sim
        .add_message(&u, "Inbox/Receipts", NewMessage::text("Fresh", "hello"))
        .expect("message");
    let (changes, _) = round(&content, &delta).await;
    let receipts = content
        .get_json(&format!(
            "/users/{u}/mailFolders/inbox/childFolders?$top=100"
        ))
        .await["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|f| f["displayName"] == "Receipts")
        .expect("Receipts")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(ids(&changes, false), [receipts].into());
}

#[tokio::test]
async fn read_basic_is_enough_and_expired_tokens_answer_410() {
    let mut cfg = SimConfig::with_size(7, 4, 30);
    cfg.granted_roles = [roles::USER_READ_ALL, roles::MAIL_READ_BASIC_ALL]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let ctx = common::start(cfg).await;
    let u = ctx.mailbox_user();
    let (_, delta) = round(&ctx, &format!("/users/{u}/mailFolders/delta")).await;
    ctx.sim.expire_delta_tokens();
    let (s, code, _) = error_code(ctx.get(&delta).await).await;
    assert_eq!((s, code.as_str()), (410, "SyncStateNotFound"));
    let (s, code, _) = error_code(
        ctx.get(&format!("/users/{u}/mailFolders/delta?$deltatoken=garbage"))
            .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "SyncStateInvalid"));
    let counts = ctx.sim.counters();
    assert!(counts.kind("folder_delta").requests >= 3, "{counts:?}");
}
