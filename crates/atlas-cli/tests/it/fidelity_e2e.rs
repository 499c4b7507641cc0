//! Mail in full fidelity (issue 14, `--fidelity full`) through the binary against the
//! simulator: a repository backed up with MIME only gains every message's export stream
//! (no MIME downloaded again), an unchanged incremental exports nothing, a changed or new
//! message is exported again — 20 per `exportItems` request, counted at the simulator —
//! and verify reads every stream back.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::collections::{BTreeMap, HashMap};

use atlas_core::model::{ContentKind, ContentRef, ItemMeta};
use atlas_sim::{MessageUpdate, NewMessage, roles};

use super::graph_e2e::{Sim, json_run};
use super::{Sandbox, output_text};

/// A tenant whose app reads mail and may export mailbox items.
fn mail_export_sim() -> Sim {
    Sim::start(Sim::tenant(
        2,
        60,
        &[
            roles::USER_READ_ALL,
            roles::MAIL_READ,
            roles::MAILBOX_FOLDER_READ_ALL,
            roles::MAILBOX_ITEM_READ_ALL,
            roles::MAILBOX_ITEM_EXPORT_ALL,
        ],
    ))
}

/// `exportItems` requests a `--fidelity full` run makes before any mailbox: its
/// permission check exports an id of no item once (see
/// `full_fidelity_without_the_export_permission_is_refused_up_front`).
const PREFLIGHT: u64 = 1;

/// Every message of the latest snapshot, by immutable id.
fn stored(sim: &Sim, sandbox: &Sandbox, upn: &str) -> HashMap<String, ItemMeta> {
    let (repo, record) = sim.latest_snapshot(&sandbox.repo(), upn);
    sim.runtime.block_on(async {
        let mut out = HashMap::new();
        for f in &record.folders {
            for m in repo.load_folder_items(&f.items).await.expect("items") {
                out.insert(m.id.as_str().to_owned(), m);
            }
        }
        out
    })
}

/// Each folder's saved links in the latest snapshot, by folder id: the message delta
/// link and the mailboxItem delta link, and whether the folder holds messages.
fn saved_links(
    sim: &Sim,
    sandbox: &Sandbox,
    upn: &str,
) -> BTreeMap<String, (Option<String>, Option<String>, bool)> {
    sim.latest_snapshot(&sandbox.repo(), upn)
        .1
        .folders
        .into_iter()
        .map(|f| {
            (
                f.folder.id.as_str().to_owned(),
                (f.delta_link, f.item_delta_link, f.stored_item_count > 0),
            )
        })
        .collect()
}

fn stream_of(m: &ItemMeta) -> Option<ContentRef> {
    m.content_of(ContentKind::Export)
}

/// `atlas --json backup -m upn --kinds mail` with extra arguments; the summary of the
/// mailbox and the `exportItems` requests the simulator served.
fn backup(sim: &Sim, sandbox: &Sandbox, upn: &str, extra: &[&str]) -> (serde_json::Value, u64) {
    sim.handle.reset_counters();
    let out = sandbox
        .against(sim)
        .args(["--json", "backup", "-m", upn, "--kinds", "mail"])
        .args(extra)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let doc = super::json_schemas::assert_schema("backup", &out);
    let exports = sim.handle.counters().kind("export_items").requests;
    (doc["mailboxes"][0]["summary"].clone(), exports)
}

#[test]
fn full_fidelity_keeps_every_messages_stream_and_exports_only_what_changed() {
    let sim = mail_export_sim();
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    assert_eq!(
        sandbox
            .against(&sim)
            .arg("init")
            .output()
            .expect("runs")
            .status
            .code(),
        Some(0)
    );

    // MIME only (the default): no stream, no export request.
    let (summary, exports) = backup(&sim, &sandbox, &upn, &[]);
    assert_eq!(exports, 0, "{summary}");
    assert_eq!(summary["mailStreams"], 0, "{summary}");
    let messages = sim.handle.dump_mailbox(&upn).expect("dump").messages;
    assert!(messages.len() >= 40, "{} messages", messages.len());
    assert!(
        stored(&sim, &sandbox, &upn)
            .values()
            .all(|m| stream_of(m).is_none())
    );

    // Full fidelity, from the configuration: every message gains its stream; the MIME
    // is reused, and the streams come 20 per request, folder by folder.
    let per_folder: BTreeMap<&str, usize> = messages.iter().fold(BTreeMap::new(), |mut acc, m| {
        *acc.entry(m.folder_id.as_str()).or_default() += 1;
        acc
    });
    let batches: usize = per_folder.values().map(|n| n.div_ceil(20)).sum();
    sim.handle.reset_counters();
    let out = sandbox
        .against(&sim)
        .env("ATLAS_FIDELITY", "full")
        .args(["--json", "backup", "-m", &upn, "--kinds", "mail"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let doc = super::json_schemas::assert_schema("backup", &out);
    let summary = &doc["mailboxes"][0]["summary"];
    assert_eq!(summary["downloaded"], 0, "MIME is reused: {summary}");
    assert_eq!(summary["mailStreams"], messages.len(), "{summary}");
    assert_eq!(
        sim.handle.counters().kind("export_items").requests,
        batches as u64 + PREFLIGHT,
        "{per_folder:?}"
    );
    assert_eq!(sim.handle.counters().kind("mime").requests, 0);
    // The request cost: every message reported once, and the mail requests (folders,
    // delta pages, mailboxItem delta, exportItems) are what the simulator served for
    // mail, give or take the directory calls counted as `other`.
    let costs = doc["graph"]["byKind"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mail = costs
        .iter()
        .find(|c| c["kind"] == "mail")
        .unwrap_or_else(|| panic!("no mail cost in {doc}"));
    assert_eq!(mail["items"], messages.len(), "{mail}");
    let requests = mail["requests"].as_u64().expect("requests");
    assert!(
        requests >= batches as u64 + per_folder.len() as u64,
        "{mail}"
    );
    assert!(requests < sim.handle.counters().total_requests(), "{mail}");
    let ratio = mail["itemsPerRequest"].as_f64().expect("ratio");
    #[allow(clippy::cast_precision_loss)]
    let want = messages.len() as f64 / requests as f64;
    assert!((ratio - want).abs() < 0.01, "{ratio} vs {want}");
    let text = output_text(
        &sandbox
            .against(&sim)
            .args([
                "backup",
                "-m",
                &upn,
                "--kinds",
                "mail",
                "--fidelity",
                "full",
            ])
            .output()
            .expect("runs"),
    );
    assert!(
        text.contains("Graph requests by kind: mail "),
        "the human summary names the cost: {text}"
    );
    let first = stored(&sim, &sandbox, &upn);
    assert_eq!(first.len(), messages.len());
    for m in &messages {
        let meta = &first[&m.immutable_id];
        let stream = stream_of(meta).unwrap_or_else(|| panic!("{} has no stream", m.id));
        assert!(stream.size > 0);
        assert_ne!(stream.id, meta.mime, "the stream is not the MIME");
    }

    // Nothing changed: nothing exported.
    let (summary, exports) = backup(&sim, &sandbox, &upn, &["--fidelity", "full"]);
    assert_eq!(exports, PREFLIGHT, "{summary}");
    assert_eq!(summary["mailStreams"], 0, "{summary}");
    assert_eq!(summary["downloaded"], 0, "{summary}");

    // Two messages of one folder change (read state, categories), one arrives there.
    let folder = per_folder
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(f, _)| (*f).to_owned())
        .expect("a folder");
    let in_folder: Vec<_> = messages.iter().filter(|m| m.folder_id == folder).collect();
    let (a, b) = (in_folder[0], in_folder[1]);
    sim.handle
        .update_message(
            &upn,
            &a.id,
            &MessageUpdate {
                is_read: Some(!a.is_read),
                ..MessageUpdate::default()
            },
        )
        .expect("change a");
    sim.handle
        .update_message(
            &upn,
            &b.id,
            &MessageUpdate {
                categories: Some(vec!["Red category".into()]),
                ..MessageUpdate::default()
            },
        )
        .expect("change b");
    let new_id = sim
        .handle
        .add_message(
            &upn,
            &folder,
            NewMessage::text("Arrived after the full backup", "hello"),
        )
        .expect("new message");
    let (summary, exports) = backup(&sim, &sandbox, &upn, &["--fidelity", "full"]);
    assert_eq!(
        exports,
        1 + PREFLIGHT,
        "three messages of one folder, one request: {summary}"
    );
    assert_eq!(summary["mailStreams"], 3, "{summary}");
    assert_eq!(
        summary["downloaded"], 1,
        "only the new message's MIME: {summary}"
    );
    let second = stored(&sim, &sandbox, &upn);
    for changed in [a, b] {
        assert_ne!(
            stream_of(&second[&changed.immutable_id]).map(|s| s.id),
            stream_of(&first[&changed.immutable_id]).map(|s| s.id),
            "{} changed, so did its stream",
            changed.id
        );
    }
    for m in messages.iter().filter(|m| m.id != a.id && m.id != b.id) {
        assert_eq!(
            stream_of(&second[&m.immutable_id]),
            stream_of(&first[&m.immutable_id]),
            "{} did not change, nor did its stream",
            m.id
        );
    }
    let dump = sim.handle.dump_mailbox(&upn).expect("dump");
    let added = dump
        .messages
        .iter()
        .find(|m| m.id == new_id || m.immutable_id == new_id)
        .expect("the new message");
    assert!(stream_of(&second[&added.immutable_id]).is_some());

    // Every stream is read back and checked.
    let out = sandbox
        .against(&sim)
        .args(["verify", "--read-data"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

/// A 4-user tenant whose app reads mail and mailbox items and has `mailbox_role`
/// besides, an initialized repository, and a `--fidelity full` backup of the first user.
/// Returns the simulator, the sandbox, that user and a second one (a restore target).
fn backed_up_with_streams(messages: usize, mailbox_role: &str) -> (Sim, Sandbox, String, String) {
    let sim = Sim::start(Sim::tenant(
        4,
        messages,
        &[
            roles::USER_READ_ALL,
            roles::MAIL_READ_WRITE,
            roles::MAILBOX_FOLDER_READ_ALL,
            roles::MAILBOX_ITEM_READ_ALL,
            mailbox_role,
        ],
    ));
    let sandbox = Sandbox::new();
    let users = sim.licensed_users();
    let (upn, other) = (users[0].clone(), users[1].clone());
    assert_eq!(
        sandbox
            .against(&sim)
            .arg("init")
            .output()
            .expect("runs")
            .status
            .code(),
        Some(0)
    );
    backup(&sim, &sandbox, &upn, &["--fidelity", "full"]);
    (sim, sandbox, upn, other)
}

/// A message as the simulator keeps it, without where it is (ids, folder).
fn message_identity(m: &atlas_sim::MessageDump) -> serde_json::Value {
    let mut v = serde_json::to_value(m).expect("json");
    if let Some(o) = v.as_object_mut() {
        for k in [
            "id",
            "immutableId",
            "immutable_id",
            "folderId",
            "folder_id",
            "folderPath",
            "folder_path",
        ] {
            o.remove(k);
        }
    }
    v
}

#[test]
fn full_fidelity_mail_is_restored_from_its_stream_and_from_mime_only_when_asked() {
    let (sim, sandbox, upn, other) =
        backed_up_with_streams(25, roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL);
    let source = sim.handle.dump_mailbox(&upn).expect("dump").messages;
    assert!(
        stored(&sim, &sandbox, &upn)
            .values()
            .all(|m| stream_of(m).is_some())
    );

    let restore = |extra: &[&str]| {
        sim.handle.reset_counters();
        let out = sandbox
            .against(&sim)
            .args([
                "--json", "restore", "-m", &upn, "-T", &other, "--kinds", "mail",
            ])
            .args(extra)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let doc = super::json_schemas::assert_schema("restore", &out);
        let c = sim.handle.counters();
        (
            doc,
            c.kind("import_item").requests,
            c.kind("create_message").requests,
        )
    };
    // The dry run names the folders imported from their streams, and --from-mime or in
    // place plans every folder from MIME.
    let planned = |extra: &[&str]| {
        let args = [
            &["restore", "-m", &upn, "--kinds", "mail", "--dry-run"],
            extra,
        ]
        .concat();
        let (code, plan, text) = json_run(&sandbox, &sim, &args);
        assert_eq!(code, Some(0), "{text}");
        super::json_schemas::validate("restorePlan", &plan).expect("documented plan");
        let mut methods: BTreeMap<String, u64> = BTreeMap::new();
        for f in plan["folders"].as_array().cloned().unwrap_or_default() {
            if f["messages"].as_u64() > Some(0) {
                let method = f["method"].as_str().expect("method").to_owned();
                *methods.entry(method).or_default() += f["messages"].as_u64().unwrap_or(0);
            }
        }
        methods
    };
    let all = |method: &str| BTreeMap::from([(method.to_owned(), source.len() as u64)]);
    assert_eq!(planned(&["-T", &other]), all("import"));
    assert_eq!(planned(&["-T", &other, "--from-mime"]), all("mime"));
    assert_eq!(planned(&["--in-place"]), all("mime"));
    let out = sandbox
        .against(&sim)
        .args(["restore", "-m", &upn, "-T", &other, "--dry-run"])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert!(
        text.contains("message(s), imported from their full-fidelity streams"),
        "{text}"
    );

    let (doc, imports, creates) = restore(&[]);
    assert_eq!(doc["complete"], true, "{doc}");
    assert_eq!(doc["created"].as_u64(), Some(source.len() as u64), "{doc}");
    assert_eq!(imports, source.len() as u64, "one import per message");
    assert_eq!(creates, 0, "no message created from MIME");
    let root = doc["root"].as_str().expect("root").to_owned();
    let restored: Vec<atlas_sim::MessageDump> = sim
        .handle
        .dump_mailbox(&other)
        .expect("dump")
        .messages
        .into_iter()
        .filter(|m| m.folder_path.starts_with(&format!("{root}/")))
        .collect();
    let mut want: Vec<String> = source
        .iter()
        .map(|m| format!("{}|{}", m.folder_path, message_identity(m)))
        .collect();
    let mut got: Vec<String> = restored
        .iter()
        .map(|m| {
            let path = m
                .folder_path
                .strip_prefix(&format!("{root}/"))
                .unwrap_or_default();
            format!("{path}|{}", message_identity(m))
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "a restored message differs from its source");
    }

    // Again: nothing is imported twice.
    let (doc, imports, creates) = restore(&[]);
    assert_eq!(doc["created"], 0, "{doc}");
    assert_eq!(doc["skipped"].as_u64(), Some(source.len() as u64), "{doc}");
    assert_eq!((imports, creates), (0, 0));

    // --from-mime creates them from MIME instead.
    let (doc, imports, creates) = restore(&["--from-mime", "--root", "From MIME"]);
    assert_eq!(doc["complete"], true, "{doc}");
    assert_eq!(imports, 0);
    assert_eq!(creates, source.len() as u64);
}

#[test]
fn without_the_import_permission_full_fidelity_mail_is_restored_from_mime_with_a_warning() {
    let (sim, sandbox, upn, other) = backed_up_with_streams(10, roles::MAILBOX_ITEM_EXPORT_ALL);
    let count = sim.handle.dump_mailbox(&upn).expect("dump").messages.len() as u64;
    sim.handle.reset_counters();
    let out = sandbox
        .against(&sim)
        .args(["restore", "-m", &upn, "-T", &other, "--kinds", "mail"])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("MailboxItem.ImportExport.All"), "{text}");
    let c = sim.handle.counters();
    assert_eq!(c.kind("import_item").requests, 0);
    assert_eq!(c.kind("create_message").requests, count);
}

/// `--fidelity full` stored a folder's mailboxItem delta link joined to its message delta
/// link in `deltaLink` ("<messages> <items>"): a reader that knows only `deltaLink` (an
/// older build) would hand Graph the pair. The two are stored apart (`itemDeltaLink`). A
/// plain incremental then reads and writes plain links, asks nothing of the mailboxItem
/// delta and keeps the item links; the next full-fidelity incremental continues from them
/// and exports only what changed.
#[test]
fn the_mailbox_item_delta_link_is_stored_apart_from_the_message_delta_link() {
    let sim = mail_export_sim();
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    sandbox.against(&sim).arg("init").assert().success();
    let (summary, _) = backup(&sim, &sandbox, &upn, &["--fidelity", "full"]);
    let messages = sim.handle.dump_mailbox(&upn).expect("dump").messages;
    assert_eq!(summary["mailStreams"], messages.len(), "{summary}");
    let first = saved_links(&sim, &sandbox, &upn);
    for (folder, (link, items, holds)) in &first {
        let link = link
            .as_deref()
            .unwrap_or_else(|| panic!("{folder}: no link"));
        assert!(!link.contains(' '), "{folder}: a plain delta link");
        if *holds {
            let items = items
                .as_deref()
                .unwrap_or_else(|| panic!("{folder}: no item link"));
            assert!(!items.contains(' ') && items != link, "{folder}");
        }
    }

    // One message changes; a plain incremental (MIME only).
    let mut by_folder: BTreeMap<&str, Vec<&atlas_sim::MessageDump>> = BTreeMap::new();
    for m in &messages {
        by_folder.entry(m.folder_id.as_str()).or_default().push(m);
    }
    let mut busy = by_folder.values().filter(|v| v.len() >= 2);
    let (f, g) = (
        busy.next().expect("a folder"),
        busy.next().expect("another"),
    );
    let change = |m: &atlas_sim::MessageDump| {
        sim.handle
            .update_message(
                &upn,
                &m.id,
                &MessageUpdate {
                    is_read: Some(!m.is_read),
                    ..MessageUpdate::default()
                },
            )
            .expect("change");
    };
    change(f[0]);
    let (summary, exports) = backup(&sim, &sandbox, &upn, &[]);
    assert_eq!(exports, 0, "{summary}");
    assert_eq!(
        sim.handle.counters().kind("mailbox_item_delta").requests,
        0,
        "{summary}"
    );
    assert_eq!(
        sim.handle.counters().kind("delta").requests,
        first.len() as u64,
        "one request per folder from its saved link: {summary}"
    );
    let second = saved_links(&sim, &sandbox, &upn);
    for (folder, (link, items, _)) in &second {
        assert!(
            link.as_deref().is_some_and(|l| !l.contains(' ')),
            "{folder}: a plain delta link"
        );
        assert_eq!(items, &first[folder].1, "{folder}: the item link is kept");
    }

    // Another folder's message changes; a full-fidelity incremental exports the two
    // changed messages (the first lost its stream in the plain run), one request each
    // folder, and follows the mailboxItem delta of those two folders only.
    change(g[0]);
    let (summary, exports) = backup(&sim, &sandbox, &upn, &["--fidelity", "full"]);
    assert_eq!(summary["mailStreams"], 2, "{summary}");
    assert_eq!(exports, 2 + PREFLIGHT, "{summary}");
    assert_eq!(
        sim.handle.counters().kind("mailbox_item_delta").requests,
        2,
        "{summary}"
    );
    let third = saved_links(&sim, &sandbox, &upn);
    for (folder, (link, items, _)) in &third {
        assert!(
            link.as_deref().is_some_and(|l| !l.contains(' ')),
            "{folder}: a plain delta link"
        );
        assert!(
            items.as_deref().is_none_or(|l| !l.contains(' ')),
            "{folder}"
        );
    }
    let g_folder = g[0].folder_id.as_str();
    assert_ne!(
        third[g_folder].1, second[g_folder].1,
        "the item link moved on"
    );
}

/// Without `MailboxItem.Export.All`, `--fidelity full` made every mailbox fail half-way
/// (its MIME read, its export refused). The run is now refused before anything is read
/// or written, naming the permission (exit 2); MIME alone still works.
#[test]
fn full_fidelity_without_the_export_permission_is_refused_up_front() {
    let sim = Sim::start(Sim::tenant(
        2,
        10,
        &[
            roles::USER_READ_ALL,
            roles::MAIL_READ,
            roles::MAILBOX_FOLDER_READ_ALL,
            roles::MAILBOX_ITEM_READ_ALL,
        ],
    ));
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    assert_eq!(
        sandbox
            .against(&sim)
            .arg("init")
            .output()
            .expect("runs")
            .status
            .code(),
        Some(0)
    );
    let before = super::files_under(&sandbox.repo());
    for args in [
        vec![
            "backup",
            "-m",
            &upn,
            "--kinds",
            "mail",
            "--fidelity",
            "full",
        ],
        vec!["backup", "--kinds", "mail", "--fidelity", "full"],
    ] {
        sim.handle.reset_counters();
        let out = sandbox.against(&sim).args(&args).output().expect("runs");
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains("MailboxItem.Export.All"), "{text}");
        assert!(text.contains("--fidelity"), "{text}");
        let counters = sim.handle.counters();
        assert_eq!(counters.kind("mime").requests, 0, "no message was read");
        assert_eq!(
            super::files_under(&sandbox.repo()),
            before,
            "nothing written"
        );
    }
    let out = sandbox
        .against(&sim)
        .env("ATLAS_FIDELITY", "full")
        .args(["--json", "backup", "-m", &upn, "--kinds", "mail"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let doc = super::json_schemas::assert_schema("backup", &out);
    assert_eq!(doc["mailboxes"], serde_json::json!([]), "{doc}");
    assert!(
        doc["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w
                .as_str()
                .is_some_and(|w| w.contains("MailboxItem.Export.All")))),
        "{doc}"
    );

    // MIME alone needs no mailbox API permission.
    let (summary, exports) = backup(&sim, &sandbox, &upn, &[]);
    assert_eq!(exports, 0);
    assert_eq!(summary["complete"], true, "{summary}");
}
