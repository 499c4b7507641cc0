//! What unattended runs leave behind: `--report` (checked against the documented JSON
//! Schema by Python's jsonschema), `--metrics-file` (parsed by the Prometheus project's
//! own Python parser, `prometheus_client`), `--notify-url` (against a local HTTP receiver,
//! working and failing), and `atlas report` (the protection report), all with the binary
//! against the Graph simulator.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]
// Metric values compared here are whole numbers (counts, whole seconds) or copied values,
// exact in f64.
#![allow(clippy::float_cmp)]

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use atlas_sim::SimConfig;
use serde_json::Value;

use super::graph_e2e::Sim;
use super::json_schemas::{assert_schema, validate};
use super::{Sandbox, json, output_text};

const PARSE_METRICS: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit("Python's prometheus_client is missing: python3 -m pip install prometheus_client (scripts/test.sh does)")
samples = []
for family in text_string_to_metric_families(open(sys.argv[1], encoding="utf-8").read()):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "help": family.documentation,
                        "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(samples))
"#;

/// One sample of a metrics file, as the Prometheus parser read it.
#[derive(Debug, Clone)]
struct Sample {
    kind: String,
    help: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// The metrics file parsed by `prometheus_client`: metric name → samples.
fn parse_metrics(path: &Path) -> HashMap<String, Vec<Sample>> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(PARSE_METRICS)
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the Prometheus parser refused {}:\n{}\n{}",
        path.display(),
        output_text(&out),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    let samples: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut by_name: HashMap<String, Vec<Sample>> = HashMap::new();
    for s in samples {
        by_name
            .entry(s["name"].as_str().expect("name").to_owned())
            .or_default()
            .push(Sample {
                kind: s["type"].as_str().expect("type").to_owned(),
                help: s["help"].as_str().expect("help").to_owned(),
                labels: serde_json::from_value(s["labels"].clone()).expect("labels"),
                value: s["value"].as_f64().expect("value"),
            });
    }
    by_name
}

/// The value of `name` for `mailbox` (or the unlabelled one).
fn value(metrics: &HashMap<String, Vec<Sample>>, name: &str, mailbox: Option<&str>) -> f64 {
    metrics
        .get(name)
        .and_then(|samples| {
            samples
                .iter()
                .find(|s| s.labels.get("mailbox").map(String::as_str) == mailbox)
        })
        .unwrap_or_else(|| panic!("{name} {mailbox:?} not in {:?}", metrics.keys()))
        .value
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("file written")).expect("JSON")
}

#[test]
fn backup_report_and_metrics_then_a_failed_run_keeps_every_last_success() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 6,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let report = sandbox.cwd().join("backup.json");
    let metrics = sandbox.cwd().join("atlas_backup.prom");
    let before = now_seconds();
    let out = sandbox
        .against(&sim)
        .args(["--json", "backup", "--report"])
        .arg(&report)
        .arg("--metrics-file")
        .arg(&metrics)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    // The report is the --json document, valid against the same schema.
    let stdout = assert_schema("backup", &out);
    let file = read_json(&report);
    assert_eq!(file, stdout);
    validate("backup", &file).expect("report file is a valid backup document");

    let m = parse_metrics(&metrics);
    assert_eq!(value(&m, "atlas_backup_last_run_exit_code", None), 0.0);
    let run_success = value(&m, "atlas_backup_last_success_timestamp_seconds", None);
    assert!(
        run_success >= before.floor() && run_success <= now_seconds(),
        "{run_success}"
    );
    assert!(value(&m, "atlas_backup_last_run_duration_seconds", None) > 0.0);
    assert!(value(&m, "atlas_backup_graph_requests", None) > 0.0);
    assert_eq!(
        value(&m, "atlas_backup_graph_throttle_wait_seconds", None),
        0.0
    );
    for family in m.values().flatten() {
        assert_eq!(family.kind, "gauge");
        assert!(!family.help.is_empty());
    }
    let mailboxes: Vec<&str> = file["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .map(|r| r["mailbox"].as_str().expect("address"))
        .collect();
    assert_eq!(mailboxes.len(), 3, "{file}");
    let mut last_success = HashMap::new();
    for mailbox in &mailboxes {
        let dump = sim.handle.dump_mailbox(mailbox).expect("dump");
        let items = value(&m, "atlas_backup_mailbox_items", Some(mailbox));
        #[allow(clippy::cast_precision_loss)]
        let expected = dump.messages.len() as f64;
        assert_eq!(items, expected, "{mailbox}");
        assert_eq!(
            value(&m, "atlas_backup_mailbox_downloaded_items", Some(mailbox)),
            items
        );
        assert!(value(&m, "atlas_backup_mailbox_downloaded_bytes", Some(mailbox)) > 0.0);
        assert_eq!(
            value(&m, "atlas_backup_mailbox_success", Some(mailbox)),
            1.0
        );
        assert_eq!(value(&m, "atlas_backup_mailbox_errors", Some(mailbox)), 0.0);
        assert!(value(&m, "atlas_backup_mailbox_duration_seconds", Some(mailbox)) >= 0.0);
        let t = value(
            &m,
            "atlas_backup_last_success_timestamp_seconds",
            Some(mailbox),
        );
        assert!(t >= before.floor() && t <= now_seconds(), "{mailbox}: {t}");
        last_success.insert((*mailbox).to_owned(), t);
    }

    // A run that fails before reaching any mailbox (Entra ID refuses the secret): the
    // report is the error document, and every last-success time survives it.
    let out = sandbox
        .against(&sim)
        .env("ATLAS_CLIENT_SECRET", "not-the-secret~of-this-app")
        .args(["backup", "--report"])
        .arg(&report)
        .arg("--metrics-file")
        .arg(&metrics)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let file = read_json(&report);
    validate("error", &file).expect("an error document");
    assert_eq!(file["error"]["exitCode"], 1);
    let m = parse_metrics(&metrics);
    assert_eq!(value(&m, "atlas_backup_last_run_exit_code", None), 1.0);
    assert_eq!(
        value(&m, "atlas_backup_last_success_timestamp_seconds", None),
        run_success
    );
    for (mailbox, t) in &last_success {
        assert_eq!(
            value(
                &m,
                "atlas_backup_last_success_timestamp_seconds",
                Some(mailbox)
            ),
            *t,
            "{mailbox}"
        );
    }
    assert!(!m.contains_key("atlas_backup_mailbox_success"));

    // The metrics file lost (a new machine): the next partial run of one mailbox still
    // knows, from the repository, when each mailbox it touched last succeeded.
    std::fs::remove_file(&metrics).expect("removed");
    let one = mailboxes[0];
    sandbox
        .against(&sim)
        .args(["backup", "-m", one, "--metrics-file"])
        .arg(&metrics)
        .assert()
        .success();
    let m = parse_metrics(&metrics);
    let t = value(&m, "atlas_backup_last_success_timestamp_seconds", Some(one));
    assert!(t > last_success[one], "{t} after {}", last_success[one]);
}

#[test]
fn report_files_of_verify_forget_and_replicate_follow_their_schemas() {
    let sim = Sim::start(SimConfig {
        users: 1,
        messages_per_user: 3,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    sandbox.against(&sim).arg("backup").assert().success();
    let dir = sandbox.cwd();
    let replica = sandbox.dir.path().join("replica");
    for (args, schema) in [
        (vec!["verify", "--read-data"], "verify"),
        (vec!["forget", "--keep-last", "1", "--prune"], "forget"),
        (
            vec![
                "replicate",
                "--all",
                "--target-repository",
                replica.to_str().expect("utf-8"),
            ],
            "replicate",
        ),
    ] {
        let file = dir.join(format!("{schema}.json"));
        let metrics = dir.join(format!("atlas_{schema}.prom"));
        let out = sandbox
            .against(&sim)
            .args(&args)
            .arg("--report")
            .arg(&file)
            .arg("--metrics-file")
            .arg(&metrics)
            .output()
            .expect("runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            output_text(&out)
        );
        validate(schema, &read_json(&file)).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let m = parse_metrics(&metrics);
        let name = format!("atlas_{schema}_last_run_exit_code");
        assert_eq!(value(&m, &name, None), 0.0, "{args:?}");
    }
}

#[test]
fn a_report_path_in_a_missing_directory_is_refused_before_the_run() {
    let sandbox = Sandbox::new();
    sandbox.atlas().arg("init").assert().success();
    let out = sandbox
        .atlas()
        .args(["verify", "--report", "no/such/dir/verify.json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("does not exist"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn a_report_or_metrics_path_naming_someone_elses_file_is_refused_and_the_file_kept() {
    let sandbox = Sandbox::new();
    sandbox.atlas().arg("init").assert().success();
    let precious = sandbox.dir.path().join("thesis.txt");
    std::fs::write(&precious, "four years of work\n").expect("write");
    for option in ["--report", "--metrics-file"] {
        let out = sandbox
            .atlas()
            .args(["verify", option])
            .arg(&precious)
            .output()
            .expect("runs");
        assert_eq!(
            out.status.code(),
            Some(3),
            "{option}: {}",
            output_text(&out)
        );
        assert!(
            output_text(&out).contains("not an Atlas"),
            "{option}: {}",
            output_text(&out)
        );
        assert_eq!(
            std::fs::read_to_string(&precious).expect("still there"),
            "four years of work\n",
            "{option} replaced a file Atlas did not write"
        );
    }
    // Files Atlas wrote itself (and empty ones) are replaced run after run.
    let report = sandbox.dir.path().join("verify.json");
    let metrics = sandbox.dir.path().join("verify.prom");
    std::fs::write(&metrics, "").expect("empty file");
    for _ in 0..2 {
        let out = sandbox
            .atlas()
            .args(["verify", "--report"])
            .arg(&report)
            .arg("--metrics-file")
            .arg(&metrics)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    assert_eq!(read_json(&report)["schemaVersion"], 1);
    assert!(
        std::fs::read_to_string(&metrics)
            .expect("metrics")
            .contains("atlas_verify_last_run_exit_code")
    );
}

/// A local webhook receiver: answers the n-th request with `statuses[n]` (the last one
/// repeated) and records each request's first line and body.
struct Receiver {
    url: String,
    requests: Requests,
}

/// Each request's first line and body.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

impl Receiver {
    fn start(statuses: Vec<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://{}/hooks/SECRET-TOKEN-123?key=abc",
            listener.local_addr().expect("addr")
        );
        let requests: Requests = Arc::default();
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut first = String::new();
                reader.read_line(&mut first).expect("request line");
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).expect("header");
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().expect("length");
                        }
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).expect("body");
                seen.lock()
                    .expect("lock")
                    .push((first.trim().to_owned(), body));
                let status = statuses[n.min(statuses.len() - 1)];
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.requests.lock().expect("lock").clone()
    }
}

#[test]
fn notify_posts_the_run_document_and_retries_a_failing_receiver() {
    let sandbox = Sandbox::new();
    sandbox.atlas().arg("init").assert().success();

    // Down once, then up: delivered on the second attempt.
    let receiver = Receiver::start(vec![503, 204]);
    let out = sandbox
        .atlas()
        .args(["--json", "verify", "--notify-url", &receiver.url])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[1].0.starts_with("POST /hooks/SECRET-TOKEN-123"),
        "{requests:?}"
    );
    let body: Value = serde_json::from_slice(&requests[1].1).expect("JSON body");
    assert_eq!(body, json(&out));
    validate("verify", &body).expect("the verify document");
    assert!(
        !output_text(&out).contains("warning"),
        "{}",
        output_text(&out)
    );

    // Always failing: a bounded number of attempts, a warning that does not show the
    // URL's secret, and the exit code of the run itself.
    let receiver = Receiver::start(vec![500]);
    let out = sandbox
        .atlas()
        .args(["verify", "--notify-url", &receiver.url])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(receiver.requests().len(), 3);
    let text = output_text(&out);
    assert!(
        text.contains("not delivered") && text.contains("500"),
        "{text}"
    );
    assert!(
        !text.contains("SECRET-TOKEN") && !text.contains("key=abc"),
        "{text}"
    );

    // Refusing (4xx) is final at once.
    let receiver = Receiver::start(vec![404]);
    let out = sandbox
        .atlas()
        .args(["verify", "--notify-url", &receiver.url])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(receiver.requests().len(), 1);

    // Nobody listening, and a failed run: its exit code and its error document.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = sandbox
        .atlas()
        .env(
            "ATLAS_ENCRYPTION_PASSPHRASE",
            "the wrong passphrase, surely",
        )
        .args(["verify", "--notify-url"])
        .arg(format!("http://127.0.0.1:{closed}/hook"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("not delivered"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn the_protection_report_finds_stale_and_never_backed_up_mailboxes() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 3,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let users = sim.licensed_users();
    let one = users[0].clone();
    sandbox
        .against(&sim)
        .args(["backup", "-m", &one])
        .assert()
        .success();

    // Repository only: the one mailbox is protected.
    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "report"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let doc = assert_schema("report", &out);
    assert_eq!(doc["totals"]["protected"], 1, "{doc}");
    assert_eq!(doc["mailboxes"][0]["mailbox"], one.to_lowercase());
    assert_eq!(doc["mailboxes"][0]["state"], "protected");
    assert_eq!(doc["mailboxes"][0]["inTenant"], Value::Null);

    // Older than allowed: stale, exit 2.
    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "report", "--max-age", "0s"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let doc = assert_schema("report", &out);
    assert_eq!(doc["mailboxes"][0]["state"], "stale");

    // Against the tenant: every other mailbox of the tenant is unprotected.
    let out = sandbox
        .against(&sim)
        .args(["--json", "report", "--compare-tenant"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let doc = assert_schema("report", &out);
    let tenant_mailboxes: Vec<String> = sim
        .handle
        .users()
        .into_iter()
        .filter(|u| u.has_mailbox)
        .map(|u| u.upn.to_lowercase())
        .collect();
    let lines = doc["mailboxes"].as_array().expect("mailboxes");
    assert_eq!(lines.len(), tenant_mailboxes.len(), "{doc}");
    for line in lines {
        let mailbox = line["mailbox"].as_str().expect("address");
        assert!(tenant_mailboxes.iter().any(|m| m == mailbox), "{mailbox}");
        let expected = if mailbox == one.to_lowercase() {
            "protected"
        } else {
            "unprotected"
        };
        assert_eq!(line["state"], expected, "{line}");
        assert_eq!(line["inTenant"], true);
    }
    assert_eq!(doc["totals"]["unprotected"], tenant_mailboxes.len() - 1);

    // The text report names them too.
    let out = sandbox
        .against(&sim)
        .args(["report", "--compare-tenant"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("UNPROTECTED") && text.contains("1 protected"),
        "{text}"
    );

    // Every mailbox backed up: nothing unprotected, exit 0.
    sandbox.against(&sim).arg("backup").assert().success();
    let out = sandbox
        .against(&sim)
        .args(["--json", "report", "--compare-tenant"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let doc = assert_schema("report", &out);
    assert_eq!(doc["totals"]["unprotected"], 0, "{doc}");
}
