//! The `atlas` binary against the Graph simulator over HTTP: backup, status, mailboxes,
//! list, verify, save and demo, with faults switched on, and the bad-input paths (wrong
//! secret, unknown tenant, missing permission, unknown mailbox, mailbox without Exchange,
//! wrong passphrase). Repository contents are checked against the simulator's own dump.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use atlas_core::model::{ContentKind, ItemMeta, MailboxId, SnapshotRecord};
use atlas_core::ports::BlobStore;
use atlas_core::repo::{Passphrase, Repository};
use atlas_sim::{FaultConfig, SimConfig, SimHandle, Simulator, roles};
use atlas_store::LocalStore;

use super::{PASSPHRASE, Sandbox, json, output_text};

/// The application permissions that back up every kind: mail (with its full-fidelity
/// export stream), calendars, contacts, tasks, notes and the mailbox configuration.
pub(super) const EVERY_KIND_ROLES: [&str; 9] = [
    roles::USER_READ_ALL,
    roles::MAIL_READ_WRITE,
    roles::MAILBOX_FOLDER_READ_ALL,
    roles::MAILBOX_ITEM_READ_ALL,
    roles::MAILBOX_ITEM_EXPORT_ALL,
    roles::CALENDARS_READ,
    roles::CONTACTS_READ,
    roles::TASKS_READ_ALL,
    roles::MAILBOX_SETTINGS_READ,
];

/// Permission names as the simulator's `granted_roles` takes them.
pub(super) fn granted(roles: &[&str]) -> BTreeSet<String> {
    roles.iter().map(|r| (*r).to_owned()).collect()
}

/// A simulator on its own runtime thread, alive as long as this value. Shared by the
/// binary tests that need a tenant (graph, S3, replication, v1 restore).
pub(super) struct Sim {
    pub(super) handle: SimHandle,
    pub(super) runtime: tokio::runtime::Runtime,
}

impl Sim {
    pub(super) fn start(config: SimConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let handle = runtime
            .block_on(Simulator::start(config))
            .expect("simulator starts");
        Self { handle, runtime }
    }

    /// One licensed user with `messages` messages (and nobody else): the tenant of most
    /// single-mailbox scenarios. Returns the simulator and the user's address.
    pub(super) fn one_user(messages: usize) -> (Self, String) {
        let sim = Self::start(SimConfig {
            users: 1,
            shared_mailboxes: 0,
            messages_per_user: messages,
            accounts_without_mailbox: false,
            ..SimConfig::default()
        });
        let upn = sim.licensed_users().remove(0);
        (sim, upn)
    }

    /// A tenant of `users` users with `messages` messages each whose app is granted `roles`
    /// and nothing else; the configuration, for a test that changes more before
    /// [`Sim::start`].
    pub(super) fn tenant(users: usize, messages: usize, roles: &[&str]) -> SimConfig {
        SimConfig {
            users,
            messages_per_user: messages,
            granted_roles: granted(roles),
            ..SimConfig::default()
        }
    }

    /// Two users with a few messages each and an app that may read every kind: the tenant
    /// of the every-kind backup, save and verification scenarios.
    pub(super) fn every_kind() -> Self {
        Self::start(Self::tenant(2, 5, &EVERY_KIND_ROLES))
    }

    /// The settings that point `atlas` at this simulator (tenant, app credentials, Graph
    /// endpoint and authority host), for `Command::envs` of either command type.
    pub(super) fn graph_env(&self) -> [(&'static str, String); 5] {
        [
            ("ATLAS_TENANT_ID", self.handle.tenant_id()),
            ("ATLAS_CLIENT_ID", self.handle.client_id()),
            ("ATLAS_CLIENT_SECRET", self.handle.client_secret()),
            ("ATLAS_GRAPH_ENDPOINT", self.handle.base_url()),
            ("ATLAS_AUTHORITY_HOST", self.handle.base_url()),
        ]
    }

    /// The repository at `repo` (opened with the test passphrase) and the newest snapshot
    /// record of `upn` in it; read further inside `self.runtime.block_on`.
    pub(super) fn latest_snapshot(&self, repo: &Path, upn: &str) -> (Repository, SnapshotRecord) {
        self.runtime.block_on(async {
            let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(repo.to_path_buf()));
            let repo = Repository::open(
                store,
                &self.handle.tenant_id(),
                &Passphrase::new(PASSPHRASE),
            )
            .await
            .expect("repository opens");
            let snap = repo
                .latest_snapshot(&MailboxId::new(upn))
                .await
                .expect("list")
                .expect("a snapshot");
            (repo, snap.record)
        })
    }

    /// Every stored representation of every item of the newest snapshot of `upn` in the
    /// repository at `repo`: the item, which representation, and its bytes.
    pub(super) fn latest_contents(
        &self,
        repo: &Path,
        upn: &str,
    ) -> Vec<(ItemMeta, ContentKind, Vec<u8>)> {
        let (repo, record) = self.latest_snapshot(repo, upn);
        self.runtime.block_on(async {
            let mut out = Vec::new();
            for f in &record.folders {
                for m in repo.load_folder_items(&f.items).await.expect("items") {
                    for c in m.contents() {
                        let bytes = repo.read_blob(&c.id).await.expect("blob");
                        out.push((m.clone(), c.kind, bytes.to_vec()));
                    }
                }
            }
            out
        })
    }

    /// Licensed users with a mailbox (the simulator's kind `user`).
    pub(super) fn licensed_users(&self) -> Vec<String> {
        self.handle
            .users()
            .into_iter()
            .filter(|u| u.has_mailbox && u.kind == "user")
            .map(|u| u.upn)
            .collect()
    }

    fn user_with_mailbox(&self) -> String {
        self.handle
            .users()
            .into_iter()
            .find(|u| u.has_mailbox && u.kind == "user")
            .expect("a licensed user")
            .upn
    }

    fn user_of_kind(&self, kind: &str) -> String {
        self.handle
            .users()
            .into_iter()
            .find(|u| u.kind == kind)
            .unwrap_or_else(|| panic!("a {kind} user"))
            .upn
    }
}

impl Sandbox {
    /// `atlas` configured for the simulator and a local repository in the sandbox.
    pub(super) fn against(&self, sim: &Sim) -> assert_cmd::Command {
        let mut cmd = self.bare();
        cmd.envs(sim.graph_env())
            .env("ATLAS_ENCRYPTION_PASSPHRASE", PASSPHRASE)
            .env("ATLAS_REPOSITORY", self.repo());
        cmd
    }
}

/// `atlas --json ARGS` against the simulator: its exit code, its document (`null` when
/// stdout is not one) and everything it printed.
pub(super) fn json_run(
    sandbox: &Sandbox,
    sim: &Sim,
    args: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let out = sandbox
        .against(sim)
        .arg("--json")
        .args(args)
        .output()
        .expect("runs");
    let text = output_text(&out);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), doc, text)
}

/// Every message of every given mailbox of the simulator is in the repository's latest
/// snapshot with byte-identical MIME, and nothing else is.
fn assert_repository_matches(sim: &Sim, sandbox: &Sandbox, mailboxes: &[String]) {
    sim.runtime.block_on(async {
        let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(sandbox.repo()));
        let repo = Repository::open(store, &sim.handle.tenant_id(), &Passphrase::new(PASSPHRASE))
            .await
            .expect("repository opens");
        for upn in mailboxes {
            let dump = sim.handle.dump_mailbox(upn).expect("dump");
            let snap = repo
                .latest_snapshot(&MailboxId::new(upn))
                .await
                .expect("list")
                .unwrap_or_else(|| panic!("{upn} has a snapshot"));
            let mut stored = HashMap::new();
            for f in &snap.record.folders {
                for m in repo.load_folder_items(&f.items).await.expect("items") {
                    stored.insert(m.id.as_str().to_owned(), m);
                }
            }
            assert_eq!(stored.len(), dump.messages.len(), "{upn}: message count");
            for m in &dump.messages {
                let meta = stored
                    .get(&m.immutable_id)
                    .unwrap_or_else(|| panic!("{upn}: {} missing", m.immutable_id));
                let mime = repo.read_blob(&meta.mime).await.expect("mime");
                assert_eq!(
                    Some(mime.as_ref()),
                    m.mime.as_deref(),
                    "{upn}: MIME differs"
                );
            }
        }
    });
}

fn mailbox_users(sim: &Sim) -> Vec<String> {
    sim.handle
        .users()
        .into_iter()
        .filter(|u| u.has_mailbox)
        .map(|u| u.upn)
        .collect()
}

#[test]
fn tenant_backup_under_faults_then_list_status_verify_save() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 25,
        ..SimConfig::default()
    });
    sim.handle.set_faults(FaultConfig {
        error_rate: 0.1,
        retry_after_secs: 0,
        hang_rate: 0.01,
        hang_delay: Some(Duration::from_secs(600)),
        ..FaultConfig::default()
    });
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let out = sandbox
        .against(&sim)
        .env("ATLAS_GRAPH_TIMEOUT", "3")
        .args(["--json", "backup", "-C", "2"])
        .timeout(Duration::from_secs(600))
        .output()
        .expect("runs");
    sim.handle.set_faults(FaultConfig::default());
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json(&out);
    let mailboxes = report["mailboxes"].as_array().expect("mailboxes");
    assert!(mailboxes.len() >= 3, "{report}");
    assert!(
        mailboxes.iter().all(|m| m["result"] == "complete"),
        "{report}"
    );
    assert!(
        report["graph"]["retries"].as_u64().unwrap_or(0) > 0,
        "faults were retried"
    );
    // Users without a mailbox are reported as skipped, not failed.
    assert!(!report["skipped"].as_array().expect("skipped").is_empty());
    assert_repository_matches(&sim, &sandbox, &mailbox_users(&sim));

    let upn = sim.user_with_mailbox();
    let out = sandbox
        .against(&sim)
        .args(["status", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("up to date") && !text.contains("pending"),
        "{text}"
    );

    // Repository-only commands need no Graph settings at all.
    let out = sandbox
        .atlas_for(&sim)
        .args(["list"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&upn));

    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "list", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let snaps = json(&out);
    let snap = snaps["snapshots"][0]["id"]
        .as_str()
        .expect("snapshot id")
        .to_owned();

    let out = sandbox
        .atlas_for(&sim)
        .args(["verify"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let zip = sandbox.cwd().join("out.zip");
    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "save", "-s", &snap, "-o"])
        .arg(&zip)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let dump = sim.handle.dump_mailbox(&upn).expect("dump");
    assert_eq!(
        json(&out)["messages"].as_u64(),
        Some(dump.messages.len() as u64)
    );
    assert!(zip.exists());
    // Saving again over the file without -y and without a terminal is refused.
    let out = sandbox
        .atlas_for(&sim)
        .args(["save", "-s", &snap, "-o"])
        .arg(&zip)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
}

impl Sandbox {
    /// Repository-only configuration for the simulator's tenant (no Graph settings).
    pub(super) fn atlas_for(&self, sim: &Sim) -> assert_cmd::Command {
        let mut cmd = self.bare();
        cmd.env("ATLAS_TENANT_ID", sim.handle.tenant_id())
            .env("ATLAS_ENCRYPTION_PASSPHRASE", PASSPHRASE)
            .env("ATLAS_REPOSITORY", self.repo());
        cmd
    }
}

#[test]
fn a_failing_message_makes_the_run_partial_with_exit_2_and_is_named() {
    let sim = Sim::start(SimConfig::default());
    let upn = sim.user_with_mailbox();
    let bad = sim.handle.dump_mailbox(&upn).expect("dump").messages[2]
        .id
        .clone();
    sim.handle
        .set_mime_failure(&upn, &bad, true)
        .expect("fault");
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(text.contains("Completeness gaps"), "{text}");
    assert!(text.contains("1 item(s) failed"), "{text}");
    // Next run, with the message readable again, completes.
    sim.handle
        .set_mime_failure(&upn, &bad, false)
        .expect("fault");
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_repository_matches(&sim, &sandbox, &[upn]);
}

#[test]
fn bad_graph_input_is_a_clear_error_and_writes_nothing() {
    let sim = Sim::start(SimConfig::default());
    let upn = sim.user_with_mailbox();
    let sandbox = Sandbox::new();

    // Wrong secret: explained in plain words, never echoed.
    let out = sandbox
        .against(&sim)
        .env("ATLAS_CLIENT_SECRET", "wrong-secret-value-123")
        .args(["backup", "-m", &upn])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.to_lowercase().contains("secret"), "{text}");
    assert!(
        !text.contains("wrong-secret-value-123"),
        "secret leaked: {text}"
    );
    assert!(!sandbox.repo().exists(), "nothing may be written");

    // Unknown tenant.
    let out = sandbox
        .against(&sim)
        .env("ATLAS_TENANT_ID", "99999999-8888-7777-6666-555555555555")
        .args(["backup", "-m", &upn])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.to_lowercase().contains("tenant"), "{text}");

    // Unknown mailbox.
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", "nobody@contoso.onmicrosoft.com"])
        .output()
        .expect("runs");
    let text = output_text(&out);
    // A name on the command line that is not there is a usage error (issue 11).
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("nobody@contoso.onmicrosoft.com") && text.contains("not found"),
        "{text}"
    );
    assert!(!sandbox.repo().exists(), "nothing may be written");

    // A user without an Exchange mailbox.
    let no_mailbox = sim.user_of_kind("no_mailbox");
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", &no_mailbox])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("no Exchange Online mailbox"), "{text}");
    assert!(!sandbox.repo().exists(), "nothing may be written");

    // Wrong passphrase for an existing repository.
    sandbox.against(&sim).arg("init").assert().success();
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let before = std::fs::read_dir(sandbox.repo()).expect("repo").count();
    let out = sandbox
        .against(&sim)
        .env(
            "ATLAS_ENCRYPTION_PASSPHRASE",
            "a different passphrase entirely",
        )
        .args(["backup", "-m", &upn])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("wrong passphrase"), "{text}");
    assert!(!text.contains("a different passphrase entirely"));
    assert_eq!(
        std::fs::read_dir(sandbox.repo()).expect("repo").count(),
        before
    );
}

/// A Graph host name that does not resolve once signed in (the identity platform answers,
/// Graph does not): the backup's error lost the `ATLAS_GRAPH_ENDPOINT` hint that the same
/// failure gets when the client meets it directly, because the mail source port turned it
/// into text. Its kind now crosses the port: text and `--json` carry the hint, for a
/// tenant-wide backup and for one mailbox.
#[test]
fn a_graph_host_that_does_not_resolve_during_backup_names_the_endpoint_setting() {
    let sim = Sim::start(SimConfig::default());
    let upn = sim.user_with_mailbox();
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let unresolvable = |cmd: &mut assert_cmd::Command| {
        cmd.env("ATLAS_GRAPH_ENDPOINT", "https://graph.nothing-here.invalid");
    };
    for args in [vec!["backup"], vec!["backup", "-m", &upn]] {
        let run = |json: bool| {
            let mut cmd = sandbox.against(&sim);
            unresolvable(&mut cmd);
            if json {
                cmd.arg("--json");
            }
            cmd.args(&args).output().expect("runs")
        };
        assert_names_the_graph_endpoint(&args, &run(false), &run(true));
    }
}

/// A run against the unresolvable `graph.nothing-here.invalid` exits 1 naming the host
/// and `ATLAS_GRAPH_ENDPOINT`: as text (`text`) and in the `--json` error's hint (`json`).
fn assert_names_the_graph_endpoint(
    args: &[&str],
    text: &std::process::Output,
    json: &std::process::Output,
) {
    let out = output_text(text);
    assert_eq!(text.status.code(), Some(1), "{args:?}: {out}");
    assert!(
        out.contains("graph.nothing-here.invalid"),
        "{args:?}: {out}"
    );
    assert!(
        out.contains("hint: check ATLAS_GRAPH_ENDPOINT"),
        "{args:?}: {out}"
    );
    assert_eq!(
        json.status.code(),
        Some(1),
        "{args:?}: {}",
        output_text(json)
    );
    let doc = super::json_schemas::assert_schema("error", json);
    assert!(
        doc["error"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("ATLAS_GRAPH_ENDPOINT")),
        "{args:?}: {doc}"
    );
}

/// The same unresolvable Graph host met by a restore: the restore port turned the failure
/// into text, so `atlas restore` lost the `ATLAS_GRAPH_ENDPOINT` hint that backup gives.
/// Restore into the snapshot's own mailbox and into another one, text and `--json`.
#[test]
fn a_graph_host_that_does_not_resolve_during_restore_names_the_endpoint_setting() {
    let sim = Sim::start(SimConfig::default());
    let users = sim.licensed_users();
    let (upn, other) = (&users[0], &users[1]);
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    for args in [
        vec!["restore", "-m", upn],
        vec!["restore", "-m", upn, "-T", other],
    ] {
        let restore = |json: bool| {
            let mut cmd = sandbox.against(&sim);
            cmd.env("ATLAS_GRAPH_ENDPOINT", "https://graph.nothing-here.invalid");
            if json {
                cmd.arg("--json");
            }
            cmd.args(&args).output().expect("runs")
        };
        assert_names_the_graph_endpoint(&args, &restore(false), &restore(true));
    }
}

#[test]
fn missing_mail_read_permission_is_named() {
    let sim = Sim::start(SimConfig {
        granted_roles: granted(&[roles::USER_READ_ALL]),
        ..SimConfig::default()
    });
    let upn = sim.user_with_mailbox();
    let sandbox = Sandbox::new();
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", &upn])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Mail.Read"), "{text}");
}

#[test]
fn mailboxes_lists_kinds_and_omits_size_without_reports_permission() {
    let sim = Sim::start(SimConfig::default());
    let sandbox = Sandbox::new();
    let out = sandbox
        .against(&sim)
        .args(["--json", "mailboxes"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let list = json(&out);
    assert_eq!(list["sizesAvailable"], true);
    let list = list["mailboxes"].as_array().expect("array");
    assert!(list.iter().any(|m| m["kind"] == "licensed"));
    assert!(list.iter().any(|m| m["kind"] == "shared"));
    assert!(list.iter().any(|m| m["kind"] == "noMailbox"));
    assert!(
        list.iter().any(|m| m.get("sizeBytes").is_some()),
        "sizes with Reports.Read.All"
    );

    let sim = Sim::start(SimConfig {
        granted_roles: granted(&[roles::USER_READ_ALL, roles::MAIL_READ]),
        ..SimConfig::default()
    });
    let out = sandbox
        .against(&sim)
        .args(["mailboxes"])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("Size"), "size column omitted: {text}");
}

#[test]
fn demo_runs_the_whole_job_with_no_configuration() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .bare()
        .args([
            "--json",
            "demo",
            "--users",
            "2",
            "--messages-per-user",
            "15",
        ])
        .timeout(Duration::from_secs(300))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = super::json_schemas::assert_schema("demo", &out);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["incrementalBackup"]["downloaded"], 2, "{report}");
    assert_eq!(report["verifyProblems"], 0);
    // The whole mailbox: the runs keep every kind, and the story shows and saves the
    // changed mailbox's calendars and contacts (the files are read back by the --keep
    // test in repository_e2e).
    let by_kind = &report["fullBackup"]["itemsByKind"];
    assert_eq!(by_kind["mail"], 30, "{report}");
    for kind in ["calendar", "contacts", "tasks", "notes", "config"] {
        assert!(by_kind[kind].as_u64().unwrap_or(0) > 0, "{kind}: {report}");
    }
    let shown = report["kindsShown"].as_array().expect("kindsShown");
    assert_eq!(shown.len(), 2, "{report}");
    for (k, ext) in shown.iter().zip(["calendar", "contacts"]) {
        assert_eq!(k["kind"], ext, "{report}");
        let items = k["items"].as_u64().unwrap_or(0);
        assert!(items > 0, "{report}");
        assert_eq!(k["savedItems"], items, "every item saved: {report}");
        assert!(!k["folders"].as_array().expect("folders").is_empty());
    }
    let text = output_text(
        &sandbox
            .bare()
            .args(["demo", "--users", "2", "--messages-per-user", "3"])
            .timeout(Duration::from_secs(300))
            .output()
            .expect("runs"),
    );
    for step in [
        "11. The same snapshot",
        "calendar items",
        "12. Saved them",
        "(temporary",
    ] {
        assert!(text.contains(step), "{step}: {text}");
    }
}

#[test]
fn restore_into_another_mailbox_then_rerun_creates_nothing_new() {
    let sim = Sim::start(SimConfig {
        users: 4,
        messages_per_user: 15,
        ..SimConfig::default()
    });
    let users: Vec<String> = sim
        .handle
        .users()
        .into_iter()
        .filter(|u| u.has_mailbox && u.kind == "user")
        .map(|u| u.upn)
        .collect();
    let (source, target) = (&users[0], &users[1]);
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", source])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let before = sim
        .handle
        .dump_mailbox(target)
        .expect("dump")
        .messages
        .len();
    let expected = sim
        .handle
        .dump_mailbox(source)
        .expect("dump")
        .messages
        .len();

    // A dry run writes nothing.
    let out = sandbox
        .against(&sim)
        .args(["restore", "-m", source, "-T", target, "--dry-run"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        sim.handle
            .dump_mailbox(target)
            .expect("dump")
            .messages
            .len(),
        before
    );

    let out = sandbox
        .against(&sim)
        .args([
            "--json",
            "restore",
            "-m",
            source,
            "-T",
            target,
            "--root",
            "Recovered",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let summary = json(&out);
    assert_eq!(
        summary["created"].as_u64(),
        Some(expected as u64),
        "{summary}"
    );
    let dump = sim.handle.dump_mailbox(target).expect("dump");
    let restored: Vec<_> = dump
        .messages
        .iter()
        .filter(|m| m.folder_path.starts_with("Recovered"))
        .collect();
    assert_eq!(restored.len(), expected);
    assert!(
        restored
            .iter()
            .all(|m| !m.is_draft || m.folder_path.contains("Drafts"))
    );

    // The same restore again: everything is found, nothing duplicated.
    let out = sandbox
        .against(&sim)
        .args([
            "--json",
            "restore",
            "-m",
            source,
            "-T",
            target,
            "--root",
            "Recovered",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(json(&out)["created"].as_u64(), Some(0));
    assert_eq!(
        sim.handle
            .dump_mailbox(target)
            .expect("dump")
            .messages
            .len(),
        before + expected
    );
}

#[test]
fn forget_and_delete_remove_snapshots_and_their_data() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 12,
        ..SimConfig::default()
    });
    let upn = sim.user_with_mailbox();
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    for i in 0..3 {
        sim.handle
            .add_message(
                &upn,
                "inbox",
                atlas_sim::NewMessage::text(&format!("round {i}"), "x"),
            )
            .expect("add");
        let out = sandbox
            .against(&sim)
            .args(["backup", "-m", &upn])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    let snapshots = |s: &Sandbox| {
        let out = s
            .atlas_for(&sim)
            .args(["--json", "list", "-m", &upn])
            .output()
            .expect("runs");
        json(&out)["snapshots"].as_array().expect("array").len()
    };
    assert_eq!(snapshots(&sandbox), 3);

    // forget is a policy (restic-style): it runs unattended from cron, no prompt.
    let out = sandbox
        .atlas_for(&sim)
        .args(["forget", "--keep-last", "1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(snapshots(&sandbox), 1);

    let out = sandbox
        .atlas_for(&sim)
        .args([
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--dry-run",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let out = sandbox
        .atlas_for(&sim)
        .args(["forget", "--keep-last", "1", "--prune"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = sandbox
        .atlas_for(&sim)
        .args(["verify"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let out = sandbox
        .atlas_for(&sim)
        .args(["delete", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(3),
        "no terminal, no -y: {}",
        output_text(&out)
    );
    assert_eq!(snapshots(&sandbox), 1);
    let out = sandbox
        .atlas_for(&sim)
        .args(["delete", "-m", &upn, "-y"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "stats"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(json(&out)["snapshots"], 0, "{}", output_text(&out));
}

/// Issue 11: `status` needed `-m` and counted changes without saying what they were.
/// Without `-m` it covers every mailbox a tenant-wide backup would, and it splits what is
/// pending into new, changed and deleted messages, as the next backup will treat them.
#[test]
fn status_without_a_mailbox_covers_every_mailbox_and_splits_new_changed_deleted() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 6,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let out = sandbox.against(&sim).arg("backup").output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // One new message, one flag change, one deletion in one mailbox.
    let upn = sim.user_with_mailbox();
    let dump = sim.handle.dump_mailbox(&upn).expect("dump");
    sim.handle
        .add_message(
            &upn,
            "inbox",
            atlas_sim::NewMessage::text("fresh", "new body"),
        )
        .expect("add");
    sim.handle
        .update_message(
            &upn,
            &dump.messages[0].id,
            &atlas_sim::MessageUpdate {
                is_read: Some(!dump.messages[0].is_read),
                ..atlas_sim::MessageUpdate::default()
            },
        )
        .expect("update");
    sim.handle
        .delete_message(&upn, &dump.messages[1].id)
        .expect("delete");

    let out = sandbox
        .against(&sim)
        .args(["--json", "status"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = super::json_schemas::assert_schema("status", &out);
    let checked: Vec<&str> = report["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .map(|m| m["mailbox"].as_str().expect("address"))
        .collect();
    let mut expected = mailbox_users(&sim);
    expected.sort();
    let mut got: Vec<String> = checked.iter().map(|s| (*s).to_owned()).collect();
    got.sort();
    assert_eq!(got, expected, "every mailbox is checked: {report}");
    for m in report["mailboxes"].as_array().expect("mailboxes") {
        let want = if m["mailbox"] == upn.as_str() {
            serde_json::json!({"new": 1, "changed": 1, "deleted": 1})
        } else {
            serde_json::json!({"new": 0, "changed": 0, "deleted": 0})
        };
        assert_eq!(m["pending"], want, "{m}");
    }

    // The text form says the same per mailbox, and names the folder that is behind.
    let out = sandbox.against(&sim).arg("status").output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Folders not up to date"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with(upn.as_str()))
        .unwrap_or_else(|| panic!("a row for {upn}: {text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(row.ends_with("changes pending"), "{row}");
    assert_eq!(
        cells[cells.len() - 5..cells.len() - 2],
        ["1", "1", "1"],
        "{row}"
    );
}

/// A restore whose create request lost its answer after the message was created aborted
/// the whole run ("outcome unknown … check whether it took effect before retrying", exit
/// 1, nothing restored). Each write whose answer is lost is checked (the restore mark
/// tells whether it took effect) and the run goes on: every message once, exit 0.
#[test]
fn restore_writes_whose_answer_was_lost_are_checked_and_the_run_goes_on() {
    let sim = Sim::start(SimConfig {
        users: 4,
        messages_per_user: 12,
        ..SimConfig::default()
    });
    let users = sim.licensed_users();
    let (source, target) = (&users[0], &users[1]);
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", source])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let expected = sim
        .handle
        .dump_mailbox(source)
        .expect("dump")
        .messages
        .len();
    sim.handle.set_faults(FaultConfig {
        lost_answer_rate: 0.25,
        hang_delay: Some(Duration::from_secs(60)),
        ..FaultConfig::default()
    });
    let out = sandbox
        .against(&sim)
        .env("ATLAS_GRAPH_TIMEOUT", "1")
        .args([
            "--json",
            "restore",
            "-m",
            source,
            "-T",
            target,
            "--root",
            "Recovered",
        ])
        .output()
        .expect("runs");
    sim.handle.set_faults(FaultConfig::default());
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let summary = json(&out);
    assert_eq!(
        summary["created"].as_u64().unwrap_or(0) + summary["completed"].as_u64().unwrap_or(0),
        expected as u64,
        "{summary}"
    );
    // Every message exactly once.
    let dump = sim.handle.dump_mailbox(target).expect("dump");
    let mut marks: Vec<String> = dump
        .messages
        .iter()
        .filter(|m| m.folder_path.starts_with("Recovered"))
        .map(|m| {
            m.extended_properties
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(atlas_graph::PROP_SOURCE))
                .map(|(_, v)| v.clone())
                .expect("restored messages carry their mark")
        })
        .collect();
    assert_eq!(marks.len(), expected, "{marks:?}");
    marks.sort();
    marks.dedup();
    assert_eq!(marks.len(), expected, "a message was restored twice");
}

/// `.eml` files attached to a message came back as item attachments without their `.eml`
/// name: a file attachment stays a file attachment with its name and bytes.
#[test]
fn an_attached_eml_file_is_restored_as_a_file_with_its_name_and_bytes() {
    let sim = Sim::start(SimConfig {
        users: 4,
        messages_per_user: 3,
        ..SimConfig::default()
    });
    let users = sim.licensed_users();
    let (source, target) = (&users[0], &users[1]);
    let eml =
        b"From: x@example.com\r\nTo: y@example.com\r\nSubject: Kept as a file\r\n\r\nbody\r\n";
    let mut msg = atlas_sim::NewMessage::text("With an eml file", "see attached");
    msg.attachments.push(atlas_sim::NewAttachment {
        name: "saved.eml".into(),
        content_type: "message/rfc822".into(),
        bytes: eml.to_vec(),
        is_inline: false,
        content_id: None,
    });
    sim.handle
        .add_message(source, "inbox", msg)
        .expect("add message");
    let file_of = |dump: &atlas_sim::MailboxDump, root: &str| {
        dump.messages
            .iter()
            .filter(|m| m.folder_path.starts_with(root) && m.subject == "With an eml file")
            .flat_map(|m| m.attachments.clone())
            .collect::<Vec<_>>()
    };
    let original = file_of(&sim.handle.dump_mailbox(source).expect("dump"), "");
    assert_eq!(original.len(), 1);
    assert_eq!(original[0].kind, "file");

    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    for args in [
        vec!["backup", "-m", source.as_str()],
        vec!["restore", "-m", source, "-T", target, "--root", "Recovered"],
    ] {
        let out = sandbox.against(&sim).args(&args).output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            output_text(&out)
        );
    }
    let restored = file_of(&sim.handle.dump_mailbox(target).expect("dump"), "Recovered");
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(restored[0].kind, "file", "{restored:?}");
    assert_eq!(restored[0].name, "saved.eml");
    assert_eq!(restored[0].sha256, original[0].sha256, "same bytes");
}
