//! End-to-end tests of the `atlas` binary: real process, real local repository.
//!
//! Every test runs the binary with a cleared environment, its own temporary working and
//! home directories, and explicit `ATLAS_*` variables, so a developer's own config, `.env`
//! or variables can never leak in. Key derivation uses `ATLAS_KDF=scrypt-n14`, the
//! cheapest setting the format allows (documented as for tests only).
//!
//! The services themselves are tested in atlas-core on the memory tenant, and over the
//! Graph adapter under HTTP faults in atlas-graph; every module here runs the binary.

mod config_restore_e2e;
mod deploy;
mod exit_codes;
mod fidelity_e2e;
mod files_e2e;
mod full_disk_e2e;
mod generate;
mod graph_e2e;
mod heal_e2e;
mod interrupt_e2e;
mod json_schemas;
mod kinds_e2e;
mod kinds_fallback_e2e;
mod kinds_restore_e2e;
mod kinds_save_e2e;
mod monitor_e2e;
mod replicate_e2e;
mod repository_e2e;
mod s3_e2e;
mod shard_e2e;
mod terminal_e2e;
mod v1_e2e;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const PASSPHRASE: &str = "correct horse battery staple";

/// A sandbox: temporary cwd and home, and the command builder that uses them.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("work")).expect("work dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home dir");
        Self { dir }
    }

    fn cwd(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// `atlas` with nothing but a HOME, a cwd and the test KDF.
    fn bare(&self) -> Command {
        let mut cmd = Command::cargo_bin("atlas").expect("binary built");
        cmd.env_clear()
            .current_dir(self.cwd())
            .env("HOME", self.home())
            .env("XDG_DATA_HOME", self.home().join("data"))
            .env("ATLAS_KDF", "scrypt-n14");
        cmd
    }

    /// `atlas` configured for a local repository in the sandbox.
    fn atlas(&self) -> Command {
        let mut cmd = self.bare();
        cmd.env("ATLAS_TENANT_ID", TENANT)
            .env("ATLAS_ENCRYPTION_PASSPHRASE", PASSPHRASE)
            .env("ATLAS_REPOSITORY", self.repo());
        cmd
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.cwd().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
}

/// Files under `dir` (recursively), as paths relative to it.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(dir)
                        .expect("under dir")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

#[test]
fn version_is_the_cargo_version() {
    Sandbox::new()
        .bare()
        .arg("--version")
        .assert()
        .success()
        .stdout(format!("atlas {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_commands_and_exit_codes() {
    Sandbox::new()
        .bare()
        .arg("--help")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("init")
                .and(predicate::str::contains("key"))
                .and(predicate::str::contains("--tenant"))
                .and(predicate::str::contains("--json"))
                .and(predicate::str::contains("Exit codes")),
        );
}

#[test]
fn usage_errors_exit_3_not_clap_default_2() {
    let sandbox = Sandbox::new();
    sandbox
        .bare()
        .arg("--no-such-flag")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("--no-such-flag"));
    sandbox.bare().arg("frobnicate").assert().code(3);
    sandbox
        .bare()
        .args(["init", "--kdf", "md5"])
        .assert()
        .code(3);
    sandbox.bare().args(["-q", "-v", "init"]).assert().code(3);
}

#[test]
fn missing_configuration_is_listed_all_at_once_and_exits_3() {
    let output = Sandbox::new().bare().arg("init").output().expect("runs");
    assert_eq!(output.status.code(), Some(3), "{}", output_text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(stderr.contains("ATLAS_TENANT_ID"), "{stderr}");
    assert!(stderr.contains("ATLAS_ENCRYPTION_PASSPHRASE"), "{stderr}");
}

#[test]
fn invalid_config_file_values_are_listed_with_missing_ones() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "atlas.config.json",
        r#"{"tenant_id": "not a tenant", "s3_endpoint": "ftp://x", "encrypton_passphrase": "typo"}"#,
    );
    let output = sandbox.bare().arg("init").output().expect("runs");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "encrypton_passphrase: invalid",
        "tenant_id: invalid",
        "encryption_passphrase: missing",
        "s3_endpoint: invalid",
        "s3_access_key: missing",
        "s3_secret_key: missing",
    ] {
        assert!(stderr.contains(expected), "{expected} not in {stderr}");
    }
}

#[test]
fn short_passphrase_is_warned_about_at_startup() {
    let sandbox = Sandbox::new();
    sandbox
        .atlas()
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "short-pass")
        .arg("init")
        .assert()
        .success()
        .stderr(predicate::str::contains("shorter than 14 characters"));
    // -q silences warnings.
    sandbox
        .atlas()
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "short-pass")
        .args(["-q", "init"])
        .assert()
        .success()
        .stderr("");
}

#[test]
fn secrets_never_appear_in_any_output_of_a_failing_run() {
    let sandbox = Sandbox::new();
    let secrets = [
        ("ATLAS_ENCRYPTION_PASSPHRASE", "PASSPHRASE-d41d8cd98f00"),
        ("ATLAS_CLIENT_SECRET", "CLIENTSECRET-9e107d9d372b"),
        ("ATLAS_S3_SECRET_KEY", "S3SECRET-e4d909c290d0"),
        ("ATLAS_NEW_ENCRYPTION_PASSPHRASE", "NEWPASS-0cc175b9c0f1"),
    ];
    // Fails twice over: invalid tenant id and an S3 endpoint over plain http.
    let mut cmd = sandbox.bare();
    cmd.env("ATLAS_TENANT_ID", "bad tenant")
        .env("ATLAS_S3_ENDPOINT", "http://s3.example.com")
        .env("ATLAS_S3_ACCESS_KEY", "AKIAEXAMPLE")
        .args(["-vvv", "key", "passwd"]);
    for (name, value) in secrets {
        cmd.env(name, value);
    }
    let output = cmd.output().expect("runs");
    assert_eq!(output.status.code(), Some(3));
    let all = output_text(&output);
    for (_, value) in secrets {
        assert!(!all.contains(value), "{value} leaked:\n{all}");
    }

    // A run that fails later (wrong passphrase, at trace level) leaks nothing either.
    sandbox.atlas().arg("init").assert().success();
    let mut cmd = sandbox.atlas();
    cmd.args(["-vvv", "key", "passwd"]);
    for (name, value) in secrets {
        if name != "ATLAS_S3_SECRET_KEY" {
            cmd.env(name, value);
        }
    }
    let output = cmd.output().expect("runs");
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    let all = output_text(&output);
    for (_, value) in secrets {
        assert!(!all.contains(value), "{value} leaked:\n{all}");
    }
}

#[test]
fn secrets_in_a_malformed_dotenv_are_not_echoed() {
    let sandbox = Sandbox::new();
    sandbox.write(
        ".env",
        "ATLAS_TENANT_ID=contoso.com\nATLAS_CLIENT_SECRET='LEAKY-SECRET-VALUE\n",
    );
    let output = sandbox.bare().arg("init").output().expect("runs");
    assert_eq!(output.status.code(), Some(3));
    let all = output_text(&output);
    assert!(all.contains(".env"), "{all}");
    assert!(!all.contains("LEAKY-SECRET-VALUE"), "{all}");
}

#[test]
fn init_creates_the_repository_and_is_harmless_when_repeated() {
    let sandbox = Sandbox::new();
    let first = sandbox
        .atlas()
        .args(["--json", "init"])
        .output()
        .expect("runs");
    assert!(first.status.success(), "{}", output_text(&first));
    let report = json(&first);
    assert_eq!(report["outcome"], "created");
    assert_eq!(report["tenantId"], TENANT);
    let key_file = sandbox.repo().join("_meta").join("dek.enc");
    let key_before = std::fs::read(&key_file).expect("wrapped key written");

    let second = sandbox
        .atlas()
        .args(["--json", "init"])
        .output()
        .expect("runs");
    assert!(second.status.success(), "{}", output_text(&second));
    assert_eq!(json(&second)["outcome"], "alreadyInitialized");
    assert_eq!(std::fs::read(&key_file).expect("still there"), key_before);

    sandbox
        .atlas()
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::contains("already initialized"));
}

#[test]
fn init_with_the_wrong_passphrase_on_an_existing_repository_fails_clearly() {
    let sandbox = Sandbox::new();
    sandbox.atlas().arg("init").assert().success();
    sandbox
        .atlas()
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "not the right passphrase")
        .arg("init")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong passphrase"));
}

#[test]
fn default_repository_is_one_directory_per_tenant_in_the_data_dir() {
    let sandbox = Sandbox::new();
    let run = |tenant: &str| {
        sandbox
            .bare()
            .env("ATLAS_TENANT_ID", tenant)
            .env("ATLAS_ENCRYPTION_PASSPHRASE", PASSPHRASE)
            .arg("init")
            .assert()
            .success();
    };
    run(TENANT);
    run("Fabrikam.OnMicrosoft.com");
    let base = sandbox.home().join("data").join("atlas");
    assert!(base.join(TENANT).join("_meta/dek.enc").is_file());
    assert!(
        base.join("fabrikam.onmicrosoft.com")
            .join("_meta/dek.enc")
            .is_file()
    );
}

#[test]
fn key_passwd_rewraps_the_key_and_the_old_passphrase_stops_working() {
    let sandbox = Sandbox::new();
    sandbox.atlas().arg("init").assert().success();
    let new = "a completely different passphrase";

    let output = sandbox
        .atlas()
        .env("ATLAS_NEW_ENCRYPTION_PASSPHRASE", new)
        .args(["--json", "key", "passwd"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(json(&output)["changed"], true);

    // The old passphrase is rejected with a clear message …
    sandbox
        .atlas()
        .arg("init")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong passphrase"));
    // … and the new one opens the repository.
    sandbox
        .atlas()
        .env("ATLAS_ENCRYPTION_PASSPHRASE", new)
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::contains("already initialized"));
}

#[test]
fn key_passwd_without_a_new_passphrase_or_terminal_is_a_usage_error() {
    let sandbox = Sandbox::new();
    sandbox.atlas().arg("init").assert().success();
    sandbox
        .atlas()
        .args(["key", "passwd"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("ATLAS_NEW_ENCRYPTION_PASSPHRASE"));
    sandbox
        .atlas()
        .env("ATLAS_NEW_ENCRYPTION_PASSPHRASE", PASSPHRASE)
        .args(["key", "passwd"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("same as the current one"));
}

#[test]
fn key_passwd_on_a_missing_repository_says_to_run_init() {
    Sandbox::new()
        .atlas()
        .env("ATLAS_NEW_ENCRYPTION_PASSPHRASE", "another long passphrase")
        .args(["key", "passwd"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("init"));
}

const MULTI: &str = r#"{
    "encryption_passphrase": "shared default passphrase",
    "tenants": {
        "contoso": {"tenant_id": "contoso.onmicrosoft.com", "repository": "../contoso-repo"},
        "fabrikam": {"tenant_id": "fabrikam.onmicrosoft.com", "repository": "../fabrikam-repo"}
    }
}"#;

#[test]
fn tenant_flag_selects_a_tenant_of_a_multi_tenant_config() {
    let sandbox = Sandbox::new();
    sandbox.write("atlas.config.json", MULTI);
    let output = sandbox
        .bare()
        .args(["-t", "fabrikam", "--json", "init"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(json(&output)["tenantId"], "fabrikam.onmicrosoft.com");
    assert!(
        sandbox
            .dir
            .path()
            .join("fabrikam-repo/_meta/dek.enc")
            .is_file()
    );
    assert!(!sandbox.dir.path().join("contoso-repo").exists());
}

#[test]
fn unknown_tenant_is_a_clear_usage_error() {
    let sandbox = Sandbox::new();
    sandbox.write("atlas.config.json", MULTI);
    sandbox
        .bare()
        .args(["--tenant", "northwind", "init"])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("unknown tenant \"northwind\"")
                .and(predicate::str::contains("contoso, fabrikam")),
        );
}

#[test]
fn s3_settings_select_s3_and_an_unreachable_endpoint_is_explained_without_secrets() {
    let output = Sandbox::new()
        .atlas()
        .env_remove("ATLAS_REPOSITORY")
        // A port nothing listens on (reserved, closed).
        .env("ATLAS_S3_ENDPOINT", "http://127.0.0.1:9")
        .env("ATLAS_S3_ACCESS_KEY", "minio")
        .env("ATLAS_S3_SECRET_KEY", "minio-secret-key")
        .arg("init")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    let all = output_text(&output);
    assert!(all.contains("127.0.0.1:9"), "{all}");
    assert!(all.contains(&format!("atlas-{TENANT}")), "{all}");
    assert!(!all.contains("minio-secret-key"), "{all}");
}

#[test]
fn config_file_dotenv_and_environment_combine_with_environment_winning() {
    let sandbox = Sandbox::new();
    sandbox.write(
        ".atlas/config.json",
        &format!(r#"{{"tenant_id": "{TENANT}", "repository": "from-file"}}"#),
    );
    sandbox.write(
        ".env",
        &format!("ATLAS_ENCRYPTION_PASSPHRASE='{PASSPHRASE}'\nATLAS_REPOSITORY=from-dotenv\n"),
    );
    let output = sandbox
        .bare()
        .env("ATLAS_REPOSITORY", "from-env")
        .args(["--json", "init"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", output_text(&output));
    assert!(sandbox.cwd().join("from-env/_meta/dek.enc").is_file());
    assert!(!sandbox.cwd().join("from-dotenv").exists());
    assert!(!sandbox.cwd().join("from-file").exists());
    assert!(Path::new(json(&output)["repository"].as_str().expect("string")).ends_with("from-env"));
}

/// `atlas sim serve` prints how to connect, serves, and exits 0 when shut down (here via
/// the simulator's admin API, which needs no signal handling in the test).
#[test]
fn sim_serve_prints_connection_details_and_serves_until_shut_down() {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};

    let sandbox = Sandbox::new();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("atlas"))
        .env_clear()
        .current_dir(sandbox.cwd())
        .env("HOME", sandbox.home())
        .args([
            "--json",
            "sim",
            "serve",
            "--users",
            "1",
            "--messages-per-user",
            "2",
            "--seed",
            "7",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawns");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("reads the ready line");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
    let base = ready["baseUrl"].as_str().expect("baseUrl").to_owned();
    for field in [
        "tenantId",
        "clientId",
        "clientSecret",
        "graphEndpoint",
        "authorityHost",
    ] {
        assert!(
            ready[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} in {line}"
        );
    }

    // The server answers HTTP (401: Graph wants a token) …
    let addr = base.trim_start_matches("http://");
    let request = |method: &str, path: &str| {
        let mut stream = std::net::TcpStream::connect(addr).expect("connects");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("reads");
        response
    };
    assert!(request("GET", "/v1.0/users").starts_with("HTTP/1.1 401"));
    // … and stops cleanly when told to.
    request("POST", "/_admin/shutdown");
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(0));
}

/// In text mode the banner names everything a client needs — base URL, tenant id,
/// client id and secret — and those details sign in (for Graph's scope, as a real client
/// asks for it; the simulator refuses a scope naming its own address).
#[test]
fn sim_serve_banner_credentials_sign_in() {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};

    let sandbox = Sandbox::new();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("atlas"))
        .env_clear()
        .current_dir(sandbox.cwd())
        .env("HOME", sandbox.home())
        .args(["sim", "serve", "--users", "1", "--messages-per-user", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawns");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("reads the banner");
        let done = line.contains("admin API:");
        banner.push(line);
        if done {
            break;
        }
    }
    let value = |label: &str| {
        banner
            .iter()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("{label} in {banner:?}"))
    };
    let base = banner[0]
        .rsplit(' ')
        .next()
        .expect("base URL on the first line")
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{banner:?}");
    let (tenant, client, secret) = (
        value("tenant id:"),
        value("client id:"),
        value("client secret:"),
    );
    let addr = base.trim_start_matches("http://").to_owned();
    let post = |path: &str, body: &str| {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connects");
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("reads");
        response
    };
    let form = |scope: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &client)
            .append_pair("client_secret", &secret)
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", scope)
            .finish()
    };
    let token_path = format!("/{tenant}/oauth2/v2.0/token");
    let ok = post(&token_path, &form("https://graph.microsoft.com/.default"));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let refused = post(&token_path, &form(&format!("{base}/.default")));
    assert!(
        refused.starts_with("HTTP/1.1 400") && refused.contains("AADSTS500011"),
        "{refused}"
    );
    post("/_admin/shutdown", "");
    assert_eq!(child.wait().expect("exits").code(), Some(0));
}

#[test]
fn sim_serve_rejects_an_invalid_fault_rate_as_usage_error() {
    Sandbox::new()
        .bare()
        .args(["sim", "serve", "--error-rate", "1.5"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("between 0.0 and 1.0"));
}
