//! The scheduling examples under deploy/ stay true: systemd's own checker accepts the
//! units, and every `atlas` command line in them (systemd ExecStart, cron) is one this
//! binary accepts.

use std::path::{Path, PathBuf};

use super::{Sandbox, output_text};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The `atlas …` command lines of a file: systemd's ExecStart (with `\` continuations) or
/// cron's `cd … && atlas …`, up to a shell operator.
fn atlas_command_lines(text: &str) -> Vec<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // The program: ExecStart's first word, or the word after cron's `&&`.
            let start = if let Some(first) = words.first()?.strip_prefix("ExecStart=") {
                first.ends_with("/atlas").then_some(1)?
            } else {
                words.iter().position(|w| *w == "&&")? + 2
            };
            (words.get(start - 1)?.ends_with("atlas")).then_some(())?;
            Some(
                words[start..]
                    .iter()
                    .take_while(|w| !["|", "||", "&&", ";"].contains(w) && !w.starts_with('>'))
                    .map(|w| (*w).to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn every_atlas_command_line_of_the_examples_parses() {
    let sandbox = Sandbox::new();
    let mut checked = 0;
    for file in [
        "systemd/atlas-backup.service",
        "systemd/atlas-verify.service",
        "cron/atlas",
    ] {
        let text = std::fs::read_to_string(deploy_dir().join(file)).expect(file);
        let lines = atlas_command_lines(&text);
        assert!(!lines.is_empty(), "{file}: no atlas command found");
        for args in lines {
            // `--help` after valid arguments prints the help; after an unknown or
            // misspelled option clap reports that instead (exit 3).
            let out = sandbox
                .bare()
                .args(&args)
                .arg("--help")
                .output()
                .expect("runs");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{file}: {args:?}: {}",
                output_text(&out)
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");
}

#[test]
fn systemd_accepts_the_units() {
    let Ok(version) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED deploy::systemd_accepts_the_units: systemd-analyze is not installed\n",
        );
        return;
    };
    assert!(version.status.success());
    // Checked where the units say the binary is: here, the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = assert_cmd::cargo::cargo_bin("atlas");
    let mut units = Vec::new();
    for entry in std::fs::read_dir(deploy_dir().join("systemd")).expect("deploy/systemd") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        let text = std::fs::read_to_string(&path).expect("unit");
        let text = text.replace("/usr/local/bin/atlas", &binary.display().to_string());
        std::fs::write(dir.path().join(&name), text).expect("copy");
        units.push(dir.path().join(name));
    }
    assert!(units.len() >= 4, "{units:?}");
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("systemd-analyze runs");
    // Unknown keys and bad values are only warnings for systemd: any output is a finding.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        output_text(&out)
    );
}

/// Reads the Kubernetes manifests with PyYAML (a dependency of kubernetes-validate) and
/// prints what the test compares: per CronJob its Job's completions, parallelism and the
/// container's args; and the example overlay's patch values.
const K8S_FACTS: &str = r#"
import json, sys, yaml
base, overlay = sys.argv[1], sys.argv[2]
out = {"cronjobs": {}, "patch": {}}
for name in ("cronjob-backup.yaml", "cronjob-report.yaml"):
    doc = yaml.safe_load(open(f"{base}/{name}"))
    job = doc["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    out["cronjobs"][doc["metadata"]["name"]] = {
        "completionMode": job.get("completionMode"),
        "completions": job.get("completions"),
        "parallelism": job.get("parallelism"),
        "args": pod["containers"][0]["args"],
        "runAsNonRoot": pod["securityContext"].get("runAsNonRoot"),
        "readOnlyRootFilesystem": pod["containers"][0]["securityContext"].get("readOnlyRootFilesystem"),
        "limits": pod["containers"][0]["resources"].get("limits", {}),
        "secret": [e["secretRef"]["name"] for e in pod["containers"][0].get("envFrom", [])],
    }
kust = yaml.safe_load(open(f"{overlay}/kustomization.yaml"))
for p in kust.get("patches", []):
    for op in yaml.safe_load(p["patch"]):
        out["patch"][op["path"]] = op["value"]
print(json.dumps(out))
"#;

fn kubernetes_validate(files: &[PathBuf]) -> std::process::Output {
    let mut out = None;
    // The oldest and the newest Kubernetes minor versions the manifests are meant for.
    for version in ["1.30.0", "1.33.0"] {
        let run = std::process::Command::new("kubernetes-validate")
            .args(["--strict", "--no-warn", "-k", version])
            .args(files)
            .output()
            .expect(
                "kubernetes-validate runs (pip install kubernetes-validate; \
                 scripts/test.sh and .ci/run install it)",
            );
        if !run.status.success() {
            return run;
        }
        out = Some(run);
    }
    out.expect("ran")
}

/// The example overlay as `kubectl kustomize` renders it, in `dir`; `None` (said on
/// stderr) without kubectl.
fn render_overlay(overlay: &Path, dir: &Path) -> Option<PathBuf> {
    let Ok(render) = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay)
        .output()
    else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED rendering deploy/kubernetes/overlays/example: kubectl is not installed \
              (its files are still validated one by one)\n",
        );
        return None;
    };
    assert!(render.status.success(), "{}", output_text(&render));
    let rendered = dir.join("overlay.yaml");
    std::fs::write(&rendered, &render.stdout).expect("write");
    let text = String::from_utf8_lossy(&render.stdout).into_owned();
    assert!(
        text.contains("kind: Secret") && text.contains("auto/8"),
        "{text}"
    );
    Some(rendered)
}

/// deploy/kubernetes: every manifest is valid against the Kubernetes API schemas (offline,
/// strict: an unknown or misspelled field fails), the example overlay as kustomize renders
/// it too, the worker count agrees in its three places (base and overlay), the pods run
/// non-root on a read-only root filesystem with limits, and each container's command line
/// is one this binary accepts. (`kubernetes_validate_rejects_a_broken_manifest` shows the check can fail.)
#[test]
fn kubernetes_manifests_validate_and_agree_on_the_worker_count() {
    let k8s = deploy_dir().join("kubernetes");
    let base = k8s.join("base");
    let overlay = k8s.join("overlays/example");
    let mut files: Vec<PathBuf> = [
        "serviceaccount.yaml",
        "cronjob-backup.yaml",
        "cronjob-report.yaml",
    ]
    .iter()
    .map(|f| base.join(f))
    .collect();
    files.push(overlay.join("namespace.yaml"));
    let dir = tempfile::tempdir().expect("tempdir");
    files.extend(render_overlay(&overlay, dir.path()));
    let out = kubernetes_validate(&files);
    assert!(out.status.success(), "{}", output_text(&out));

    let facts = std::process::Command::new("python3")
        .args(["-c", K8S_FACTS])
        .arg(&base)
        .arg(&overlay)
        .output()
        .expect("python3 runs");
    assert!(facts.status.success(), "{}", output_text(&facts));
    let facts: serde_json::Value = serde_json::from_slice(&facts.stdout).expect("JSON");
    let backup = &facts["cronjobs"]["atlas-backup"];
    assert_eq!(backup["completionMode"], "Indexed", "{backup}");
    let n = backup["completions"].as_u64().expect("completions");
    assert_eq!(backup["parallelism"].as_u64(), Some(n), "{backup}");
    let args: Vec<String> = backup["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string").to_owned())
        .collect();
    let shard_at = args.iter().position(|a| a == "--shard").expect("--shard");
    assert_eq!(args[shard_at + 1], format!("auto/{n}"), "{args:?}");
    for flag in ["--report", "--metrics-file"] {
        assert!(args.iter().any(|a| a == flag), "{flag} in {args:?}");
    }
    // The overlay changes the count in all three places alike.
    let patch = &facts["patch"];
    let m = patch["/spec/jobTemplate/spec/completions"]
        .as_u64()
        .expect("patched completions");
    assert_eq!(
        patch["/spec/jobTemplate/spec/parallelism"].as_u64(),
        Some(m)
    );
    assert_eq!(
        patch[format!(
            "/spec/jobTemplate/spec/template/spec/containers/0/args/{}",
            shard_at + 1
        )],
        format!("auto/{m}"),
        "{patch}"
    );

    let sandbox = Sandbox::new();
    for (name, job) in facts["cronjobs"].as_object().expect("cronjobs") {
        assert_eq!(job["runAsNonRoot"], true, "{name}");
        assert_eq!(job["readOnlyRootFilesystem"], true, "{name}");
        assert!(job["limits"]["memory"].is_string(), "{name}: {job}");
        assert_eq!(job["secret"], serde_json::json!(["atlas"]), "{name}");
        let args: Vec<&str> = job["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string"))
            .collect();
        let out = sandbox
            .bare()
            .args(&args)
            .arg("--help")
            .output()
            .expect("runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {args:?}: {}",
            output_text(&out)
        );
    }
}

/// The validation above can fail: a misspelled field and a wrong type in a copy of the
/// backup CronJob are each rejected.
#[test]
fn kubernetes_validate_rejects_a_broken_manifest() {
    let base = deploy_dir().join("kubernetes/base");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read_to_string(base.join("cronjob-backup.yaml")).expect("read");
    for (from, to) in [
        ("      parallelism:", "      paralelism:"),
        ("      completions: 4", "      completions: four"),
    ] {
        assert!(good.contains(from), "{from}");
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, good.replacen(from, to, 1)).expect("write");
        let out = kubernetes_validate(&[broken]);
        assert!(!out.status.success(), "{to}: {}", output_text(&out));
    }
}
