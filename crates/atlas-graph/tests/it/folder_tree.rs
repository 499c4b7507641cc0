//! The folder tree from `mailFolders/delta` rounds kept between runs is exactly the tree
//! the `mailFolders` + `childFolders` walk finds, whatever the simulator's round reports
//! where api/mailfolder-delta.md is silent (whole tree or top level, hidden folders,
//! content changes: `FolderDeltaMode`), across nested and hidden folders, renames, moves
//! (within the tree and below a hidden folder) and deletions; and an unchanged tree costs
//! one request.

use std::collections::BTreeSet;

use atlas_graph::{FolderInfo, FolderTreeOptions, FolderTreeState, GraphClient};
use atlas_sim::{FolderDeltaMode, SimHandle, UserInfo};

use crate::{client, mailbox, mailbox_user, small_tenant, start};

/// What the backup takes from a folder: its place, names and flags.
type Seen = BTreeSet<(String, Option<String>, String, Option<String>, bool, bool)>;

fn seen(tree: &[FolderInfo]) -> Seen {
    tree.iter()
        .map(|f| {
            (
                f.id.as_str().to_owned(),
                f.parent_id.as_ref().map(|p| p.as_str().to_owned()),
                f.path.join("/"),
                f.well_known.clone(),
                f.is_hidden,
                f.is_search_folder,
            )
        })
        .collect()
}

fn parents_first(tree: &[FolderInfo]) {
    for (i, f) in tree.iter().enumerate() {
        if let Some(p) = &f.parent_id {
            let at = tree.iter().position(|x| &x.id == p).expect("parent listed");
            assert!(at < i, "{} comes before {}", p.as_str(), f.path.join("/"));
        }
    }
}

/// One listing from `since`, compared with the walk of the same mailbox; returns the
/// state to continue from.
async fn same_as_walk(
    c: &GraphClient,
    sim: &SimHandle,
    user: &UserInfo,
    since: Option<FolderTreeState>,
    what: &str,
) -> Option<FolderTreeState> {
    let mbx = mailbox(user);
    let opts = FolderTreeOptions::default();
    let tree = c.folder_tree(&mbx, opts, since).await.expect("tree");
    let walked = c.list_folder_tree(&mbx, opts).await.expect("walk");
    parents_first(&tree.folders);
    assert_eq!(seen(&tree.folders), seen(&walked), "{what}");
    // The simulator's own view: every folder below the root whose ancestors are visible.
    let dump = sim.dump_mailbox(&user.id).expect("dump");
    let hidden: Vec<&str> = dump
        .folders
        .iter()
        .filter(|f| f.is_hidden)
        .map(|f| f.path.as_str())
        .collect();
    let want: BTreeSet<&str> = dump
        .folders
        .iter()
        .filter(|f| f.parent_id.is_some())
        .filter(|f| {
            !hidden
                .iter()
                .any(|h| f.path == *h || f.path.starts_with(&format!("{h}/")))
        })
        .map(|f| f.path.as_str())
        .collect();
    let got: BTreeSet<String> = tree.folders.iter().map(|f| f.path.join("/")).collect();
    assert_eq!(
        got.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        want,
        "{what}"
    );
    tree.state
}

#[tokio::test]
async fn folder_delta_tree_is_the_walked_tree_across_changes() {
    let modes = [
        FolderDeltaMode::default(),
        FolderDeltaMode {
            include_hidden: true,
            ..FolderDeltaMode::default()
        },
        FolderDeltaMode {
            content_changes: true,
            include_hidden: true,
            ..FolderDeltaMode::default()
        },
        FolderDeltaMode {
            whole_tree: false,
            ..FolderDeltaMode::default()
        },
    ];
    for mode in modes {
        let what = format!("{mode:?}");
        let mut cfg = small_tenant();
        cfg.folder_delta = mode;
        let sim = start(cfg).await;
        let c = client(&sim);
        let user = mailbox_user(&sim);
        let u = user.id.as_str();

        let state = same_as_walk(&c, &sim, &user, None, &what).await;
        // A round reporting the top level only leaves nothing to continue from.
        assert_eq!(state.is_some(), mode.whole_tree, "{what}");
        let wk = state.as_ref().map_or(0, |s| s.well_known.len());
        assert!(
            !mode.whole_tree || wk == atlas_graph::WELL_KNOWN_FOLDERS.len(),
            "{what}"
        );

        // Unchanged: one request (the round from the saved link), nothing else.
        sim.reset_counters();
        let state = same_as_walk(&c, &sim, &user, state, &what).await;
        if mode.whole_tree {
            sim.reset_counters();
            let tree = c
                .folder_tree(&mailbox(&user), FolderTreeOptions::default(), state.clone())
                .await
                .expect("tree");
            let counts = sim.counters();
            assert_eq!(counts.kind("folder_delta").requests, 1, "{what}");
            assert_eq!(counts.kind("folders").requests, 0, "{what}");
            assert!(tree.state.is_some());
        }

        // Nested folders, a folder below a hidden one (the walk never reaches it), a
        // hidden folder with a child, a rename of a parent (its children's paths change),
        // a move within the tree, a move below a hidden folder and a deletion of a folder
        // with a child.
        let deep = sim.add_folder(u, "Inbox/Receipts", "2025").expect("add");
        sim.add_folder(u, &deep, "Q1").expect("add");
        sim.add_folder(u, "Yammer Root", "Below hidden")
            .expect("add");
        let hid = sim
            .add_hidden_folder(u, "Inbox", "Hidden here")
            .expect("add");
        sim.add_folder(u, &hid, "Child of hidden").expect("add");
        sim.rename_folder(u, "Inbox/Projects", "Projects (old)")
            .expect("rename");
        sim.move_folder(u, "Inbox/Receipts", "Archive")
            .expect("move");
        sim.move_folder(u, "Newsletters", "Yammer Root")
            .expect("move below hidden");
        sim.delete_folder(u, "Archive/2023").expect("delete");
        let state = same_as_walk(&c, &sim, &user, state, &format!("{what}, changed")).await;
        assert!(state.is_some() == mode.whole_tree, "{what}");

        // Back out of the hidden folder, with a new child on the way; a new top-level
        // folder; the deletion of a folder whose child was known.
        sim.move_folder(u, "Yammer Root/Newsletters", "")
            .expect("move");
        sim.add_folder(u, "Newsletters", "Weekly").expect("add");
        sim.add_folder(u, "", "New at the top").expect("add");
        sim.delete_folder(u, "Archive/Receipts").expect("delete");
        let state = same_as_walk(&c, &sim, &user, state, &format!("{what}, changed again")).await;

        // A saved link the server no longer honours: a new round, the same tree.
        if let Some(mut s) = state {
            s.delta_link = atlas_graph::DeltaLink::new(format!(
                "{}/v1.0/users/{u}/mailFolders/delta?$deltatoken=expired",
                sim.base_url()
            ));
            same_as_walk(&c, &sim, &user, Some(s), &format!("{what}, expired")).await;
        }
    }
}
