//! Precedence, tenant selection and validation, with the environment injected as a map.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError, Credential, Inputs, KdfSetting, StoreSettings};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

struct Fixture {
    _dir: tempfile::TempDir,
    cwd: PathBuf,
    home: PathBuf,
    env: BTreeMap<String, String>,
    tenant: Option<String>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cwd = dir.path().join("work");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&cwd).expect("cwd");
        std::fs::create_dir_all(&home).expect("home");
        Self {
            _dir: dir,
            cwd,
            home,
            env: BTreeMap::new(),
            tenant: None,
        }
    }

    fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    fn tenant(mut self, name: &str) -> Self {
        self.tenant = Some(name.to_owned());
        self
    }

    fn write(self, relative: &str, text: &str) -> Self {
        let path = if let Some(rest) = relative.strip_prefix("~/") {
            self.home.join(rest)
        } else {
            self.cwd.join(relative)
        };
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        self
    }

    fn inputs(&self) -> Inputs {
        Inputs {
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            home: Some(self.home.clone()),
            data_dir: Some(self.home.join("data")),
            tenant: self.tenant.clone(),
        }
    }

    fn load(&self) -> Config {
        Config::load(&self.inputs()).expect("config loads")
    }

    fn data_dir(&self) -> &Path {
        &self.home
    }
}

fn problems(err: ConfigError) -> Vec<String> {
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected Invalid, got {err}")
    };
    problems.into_iter().map(|p| p.field).collect()
}

fn local_path(store: &StoreSettings) -> &Path {
    let StoreSettings::Local { path } = store else {
        panic!("expected a local store")
    };
    path
}

#[test]
fn environment_beats_dotenv_beats_file() {
    let fx = Fixture::new()
        .write(
            "atlas.config.json",
            r#"{"tenant_id": "file.onmicrosoft.com", "encryption_passphrase": "from-the-file-xxxx", "repository": "file-repo"}"#,
        )
        .write(".env", "ATLAS_ENCRYPTION_PASSPHRASE=from-the-dotenv-xxxx\nATLAS_REPOSITORY=dotenv-repo\n")
        .env("ATLAS_REPOSITORY", "env-repo");
    let repo = fx.load().for_repository().expect("valid");
    assert_eq!(repo.tenant_id, "file.onmicrosoft.com");
    assert_eq!(repo.passphrase.expose(), "from-the-dotenv-xxxx");
    assert_eq!(local_path(&repo.store), fx.cwd.join("env-repo"));
}

#[test]
fn empty_values_count_as_unset() {
    let fx = Fixture::new()
        .write(
            "atlas.config.json",
            r#"{"tenant_id": "contoso.com", "encryption_passphrase": "a-long-enough-passphrase"}"#,
        )
        .write(".env", "ATLAS_TENANT_ID=\n")
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "");
    let repo = fx.load().for_repository().expect("valid");
    assert_eq!(repo.tenant_id, "contoso.com");
    assert_eq!(repo.passphrase.expose(), "a-long-enough-passphrase");
}

#[test]
fn first_config_file_found_is_used_and_others_are_ignored() {
    let fx = Fixture::new()
        .write(
            ".atlas/config.json",
            r#"{"tenant_id": "second.example.com"}"#,
        )
        .write(
            "~/.atlas/config.json",
            r#"{"tenant_id": "third.example.com"}"#,
        )
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "a-long-enough-passphrase");
    let config = fx.load();
    assert_eq!(
        config.file(),
        Some(fx.cwd.join(".atlas/config.json").as_path())
    );
    assert_eq!(
        config.for_repository().expect("valid").tenant_id,
        "second.example.com"
    );

    let fx = fx.write("atlas.config.json", r#"{"tenant_id": "first.example.com"}"#);
    assert_eq!(
        fx.load().for_repository().expect("valid").tenant_id,
        "first.example.com"
    );

    let fx = Fixture::new()
        .write(
            "~/.atlas/config.json",
            r#"{"tenant_id": "home.example.com"}"#,
        )
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "a-long-enough-passphrase");
    assert_eq!(
        fx.load().for_repository().expect("valid").tenant_id,
        "home.example.com"
    );
}

#[test]
fn home_atlas_config_json_without_dot_dir_is_not_searched() {
    // The old tool also read ~/atlas.config.json although its docs listed three paths; we
    // search exactly the three documented ones.
    let fx = Fixture::new()
        .write(
            "~/atlas.config.json",
            r#"{"tenant_id": "stray.example.com"}"#,
        )
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "a-long-enough-passphrase");
    assert!(fx.load().file().is_none());
    assert_eq!(
        problems(fx.load().for_repository().unwrap_err()),
        ["tenant_id"]
    );
}

#[test]
fn repository_command_lists_every_missing_field_at_once() {
    let fx = Fixture::new();
    let err = fx.load().for_repository().unwrap_err();
    let text = err.to_string();
    assert_eq!(problems(err), ["tenant_id", "encryption_passphrase"]);
    assert!(text.contains("ATLAS_TENANT_ID"), "{text}");
    assert!(text.contains("ATLAS_ENCRYPTION_PASSPHRASE"), "{text}");
    assert!(text.contains("no config file found"), "{text}");
}

#[test]
fn graph_command_lists_every_missing_field_once() {
    let fx = Fixture::new().env("ATLAS_ENCRYPTION_PASSPHRASE", "a-long-enough-passphrase");
    let err = fx.load().for_repository_and_graph().unwrap_err();
    assert_eq!(problems(err), ["tenant_id", "client_id", "client_secret"]);
}

#[test]
fn repository_only_command_needs_no_graph_credentials() {
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", TENANT)
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "a-long-enough-passphrase");
    let repo = fx
        .load()
        .for_repository()
        .expect("valid without client id/secret");
    assert_eq!(
        local_path(&repo.store),
        fx.data_dir().join("data").join("atlas").join(TENANT)
    );
}

#[test]
fn graph_settings_resolve_with_defaults() {
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", "Contoso.OnMicrosoft.com")
        .env("ATLAS_CLIENT_ID", CLIENT)
        .env("ATLAS_CLIENT_SECRET", "s3cr3t~value.with-chars");
    let graph = fx.load().for_graph().expect("valid");
    assert_eq!(graph.tenant_id, "contoso.onmicrosoft.com");
    assert_eq!(
        graph.graph_endpoint.as_str(),
        "https://graph.microsoft.com/"
    );
    assert_eq!(
        graph.authority_host.as_str(),
        "https://login.microsoftonline.com/"
    );
    assert!(
        matches!(graph.credential, Credential::Secret(ref s) if s.expose() == "s3cr3t~value.with-chars")
    );
    assert_eq!(graph.graph_scope, None);
}

#[test]
fn graph_scope_is_one_resources_default_scope() {
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", TENANT)
        .env("ATLAS_CLIENT_ID", CLIENT)
        .env("ATLAS_CLIENT_SECRET", "value")
        .env("ATLAS_GRAPH_SCOPE", " https://graph.microsoft.us/.default ");
    let graph = fx.load().for_graph().expect("valid");
    assert_eq!(
        graph.graph_scope.as_deref(),
        Some("https://graph.microsoft.us/.default")
    );
    for bad in [
        "Mail.Read",
        "https://graph.microsoft.com/.default https://outlook.office.com/.default",
    ] {
        let fx = Fixture::new()
            .env("ATLAS_TENANT_ID", TENANT)
            .env("ATLAS_CLIENT_ID", CLIENT)
            .env("ATLAS_CLIENT_SECRET", "value")
            .env("ATLAS_GRAPH_SCOPE", bad);
        let err = fx.load().for_graph().unwrap_err();
        let text = err.to_string();
        assert_eq!(problems(err), ["graph_scope"], "{bad}");
        assert!(text.contains("'/.default' scope"), "{text}");
    }
}

#[test]
fn invalid_values_are_all_reported_with_their_origin() {
    let fx = Fixture::new()
        .write(".env", "ATLAS_GRAPH_ENDPOINT=http://graph.example.com\n")
        .env("ATLAS_TENANT_ID", "not a tenant")
        .env("ATLAS_CLIENT_ID", "my-app")
        .env(
            "ATLAS_CLIENT_SECRET",
            "aaaaaaaa-1111-2222-3333-444444444444",
        )
        .env("ATLAS_AUTHORITY_HOST", "ftp://login.example.com");
    let err = fx.load().for_graph().unwrap_err();
    let text = err.to_string();
    assert_eq!(
        problems(err),
        [
            "tenant_id",
            "client_id",
            "client_secret",
            "graph_endpoint",
            "authority_host"
        ]
    );
    assert!(text.contains("ATLAS_GRAPH_ENDPOINT from"), "{text}");
    assert!(text.contains(".env"), "{text}");
    assert!(text.contains("use the secret's Value"), "{text}");
    // The secret itself is never echoed, even when it is the thing that is wrong.
    assert!(!text.contains("aaaaaaaa-1111"), "{text}");
}

#[test]
fn plain_http_is_allowed_for_loopback_only() {
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", TENANT)
        .env("ATLAS_CLIENT_ID", CLIENT)
        .env("ATLAS_CLIENT_SECRET", "value")
        .env("ATLAS_GRAPH_ENDPOINT", "http://127.0.0.1:8080")
        .env("ATLAS_AUTHORITY_HOST", "http://localhost:8080");
    let graph = fx.load().for_graph().expect("loopback http is fine");
    assert_eq!(graph.graph_endpoint.port(), Some(8080));
}

#[test]
fn certificate_credentials_need_both_existing_files() {
    let fx = Fixture::new()
        .write("cert.pem", "-----BEGIN CERTIFICATE-----\n")
        .env("ATLAS_TENANT_ID", TENANT)
        .env("ATLAS_CLIENT_ID", CLIENT)
        .env("ATLAS_CLIENT_CERTIFICATE", "cert.pem");
    assert_eq!(problems(fx.load().for_graph().unwrap_err()), ["client_key"]);

    let fx = fx.env("ATLAS_CLIENT_KEY", "missing-key.pem");
    let err = fx.load().for_graph().unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    let fx = fx.write("missing-key.pem", "-----BEGIN PRIVATE KEY-----\n");
    let graph = fx.load().for_graph().expect("valid");
    assert!(matches!(graph.credential, Credential::Certificate { .. }));

    let fx = fx.env("ATLAS_CLIENT_SECRET", "value");
    assert_eq!(
        problems(fx.load().for_graph().unwrap_err()),
        ["client_secret"]
    );
}

#[test]
fn s3_settings_select_s3_and_are_validated_together() {
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", "Contoso.com")
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "a-long-enough-passphrase")
        .env("ATLAS_S3_REGION", "eu-west-1");
    assert_eq!(
        problems(fx.load().for_repository().unwrap_err()),
        ["s3_endpoint", "s3_access_key", "s3_secret_key"]
    );

    let fx = fx
        .env("ATLAS_S3_ENDPOINT", "http://127.0.0.1:9000")
        .env("ATLAS_S3_ACCESS_KEY", "access")
        .env("ATLAS_S3_SECRET_KEY", "secret-key-value")
        .env("ATLAS_S3_FORCE_PATH_STYLE", "true");
    let repo = fx.load().for_repository().expect("valid");
    let StoreSettings::S3(s3) = repo.store else {
        panic!("expected S3")
    };
    assert_eq!(s3.bucket, "atlas-contoso.com");
    assert_eq!(s3.region, "eu-west-1");
    assert_eq!(s3.force_path_style, Some(true));

    let fx = fx
        .env("ATLAS_REPOSITORY", "/tmp/x")
        .env("ATLAS_S3_BUCKET", "Bad_Bucket");
    assert_eq!(
        problems(fx.load().for_repository().unwrap_err()),
        ["repository", "s3_bucket"]
    );
}

#[test]
fn s3_region_defaults_to_us_east_1() {
    let fx = Fixture::new().write(
        "atlas.config.json",
        r#"{"tenant_id": "contoso.com", "encryption_passphrase": "a-long-enough-passphrase",
                "s3_endpoint": "https://s3.example.com", "s3_access_key": "a", "s3_secret_key": "b",
                "s3_force_path_style": false}"#,
    );
    let StoreSettings::S3(s3) = fx.load().for_repository().expect("valid").store else {
        panic!("expected S3")
    };
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(s3.force_path_style, Some(false));
}

#[test]
fn file_problems_are_listed_with_the_missing_fields() {
    let fx = Fixture::new().write(
        "atlas.config.json",
        r#"{"tenantId": "camelCase.com", "client_id": 42, "s3_force_path_style": 3}"#,
    );
    let err = fx.load().for_repository().unwrap_err();
    assert_eq!(
        problems(err),
        [
            "client_id",
            "s3_force_path_style",
            "tenantId",
            "tenant_id",
            "encryption_passphrase"
        ]
    );
}

#[test]
fn malformed_json_reports_position_not_content() {
    let fx = Fixture::new().write(
        "atlas.config.json",
        "{\"encryption_passphrase\": \"top-secret-passphrase\",, }",
    );
    let err = Config::load(&fx.inputs()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConfigError::FileSyntax { .. }));
    assert!(text.contains("line 1"), "{text}");
    assert!(!text.contains("top-secret"), "{text}");

    let fx = Fixture::new().write("atlas.config.json", "[1, 2]");
    assert!(
        Config::load(&fx.inputs())
            .unwrap_err()
            .to_string()
            .contains("JSON object")
    );
}

#[test]
fn malformed_dotenv_reports_line_number_not_content() {
    let fx = Fixture::new().write(
        ".env",
        "# comment\nATLAS_TENANT_ID=contoso.com\nATLAS_ENCRYPTION_PASSPHRASE=two words\n",
    );
    let err = Config::load(&fx.inputs()).unwrap_err();
    assert!(
        matches!(err, ConfigError::DotEnvSyntax { line: 3, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("two words"), "{err}");

    let fx = Fixture::new().write(
        ".env",
        "ATLAS_TENANT_ID=contoso.com\nATLAS_CLIENT_SECRET='unterminated-secret\n",
    );
    let err = Config::load(&fx.inputs()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ConfigError::DotEnvSyntax { line: 2, .. }),
        "{text}"
    );
    assert!(!text.contains("unterminated-secret"), "{text}");
}

#[test]
fn dotenv_never_touches_the_process_environment() {
    let fx = Fixture::new().write(
        ".env",
        "ATLAS_TEST_ONLY_MARKER_7F3A=1\nATLAS_TENANT_ID=contoso.com\n",
    );
    let _config = fx.load();
    assert!(std::env::var_os("ATLAS_TEST_ONLY_MARKER_7F3A").is_none());
}

const MULTI: &str = r#"{
    "encryption_passphrase": "shared-default-passphrase",
    "client_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "tenants": {
        "contoso": {"tenant_id": "contoso.onmicrosoft.com", "repository": "/srv/atlas/contoso"},
        "fabrikam": {"tenant_id": "22222222-2222-3333-4444-555555555555",
                     "encryption_passphrase": "fabrikam-own-passphrase"}
    }
}"#;

#[test]
fn tenant_flag_selects_an_entry_over_the_defaults() {
    let fx = Fixture::new()
        .write("atlas.config.json", MULTI)
        .tenant("fabrikam");
    let config = fx.load();
    assert_eq!(config.tenant_profile(), Some("fabrikam"));
    let repo = config.for_repository().expect("valid");
    assert_eq!(repo.tenant_id, "22222222-2222-3333-4444-555555555555");
    assert_eq!(repo.passphrase.expose(), "fabrikam-own-passphrase");

    let fx = Fixture::new()
        .write("atlas.config.json", MULTI)
        .tenant("contoso");
    let repo = fx.load().for_repository().expect("valid");
    assert_eq!(repo.passphrase.expose(), "shared-default-passphrase");
    assert_eq!(local_path(&repo.store), Path::new("/srv/atlas/contoso"));
}

#[test]
fn tenant_can_be_selected_by_its_tenant_id_or_atlas_tenant() {
    let fx = Fixture::new()
        .write("atlas.config.json", MULTI)
        .tenant("22222222-2222-3333-4444-555555555555");
    assert_eq!(fx.load().tenant_profile(), Some("fabrikam"));

    let fx = Fixture::new()
        .write("atlas.config.json", MULTI)
        .env("ATLAS_TENANT", "contoso");
    assert_eq!(fx.load().tenant_profile(), Some("contoso"));

    // The flag beats ATLAS_TENANT.
    let fx = fx.tenant("fabrikam");
    assert_eq!(fx.load().tenant_profile(), Some("fabrikam"));
}

#[test]
fn default_tenant_applies_without_a_flag() {
    let text = MULTI.replacen('{', "{\"default_tenant\": \"contoso\",", 1);
    let fx = Fixture::new().write("atlas.config.json", &text);
    assert_eq!(fx.load().tenant_profile(), Some("contoso"));

    let text = MULTI.replacen('{', "{\"default_tenant\": \"nobody\",", 1);
    let fx = Fixture::new().write("atlas.config.json", &text);
    let err = Config::load(&fx.inputs()).unwrap_err();
    assert!(
        matches!(err, ConfigError::UnknownTenant { ref name, .. } if name == "nobody"),
        "{err}"
    );
}

#[test]
fn unknown_tenant_is_a_clear_error() {
    let fx = Fixture::new()
        .write("atlas.config.json", MULTI)
        .tenant("northwind");
    let err = Config::load(&fx.inputs()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConfigError::UnknownTenant { .. }));
    assert!(
        text.contains("northwind") && text.contains("contoso, fabrikam"),
        "{text}"
    );

    // Without named tenants, -t must match the configured tenant id.
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", "contoso.com")
        .tenant("northwind.com");
    assert!(matches!(
        Config::load(&fx.inputs()),
        Err(ConfigError::UnknownTenant { .. })
    ));
    let fx = fx.tenant("CONTOSO.com");
    assert!(Config::load(&fx.inputs()).is_ok());
}

#[test]
fn multi_tenant_file_without_selection_explains_how_to_choose() {
    let fx = Fixture::new().write("atlas.config.json", MULTI);
    let err = fx.load().for_repository().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("contoso, fabrikam") && text.contains("-t/--tenant"),
        "{text}"
    );
}

#[test]
fn environment_overriding_a_tenant_entry_is_warned_about_by_name_only() {
    let fx = Fixture::new()
        .write("atlas.config.json", MULTI)
        .tenant("fabrikam")
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "env-passphrase-value");
    let config = fx.load();
    assert_eq!(config.warnings().len(), 1);
    assert!(config.warnings()[0].contains("ATLAS_ENCRYPTION_PASSPHRASE"));
    assert!(!config.warnings()[0].contains("env-passphrase-value"));
    assert_eq!(
        config.for_repository().expect("valid").passphrase.expose(),
        "env-passphrase-value"
    );
}

#[test]
fn short_passphrase_is_warned_about_counting_characters() {
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", TENANT)
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "ääääääääääääa");
    let warnings = fx.load().for_repository().expect("valid").warnings();
    assert_eq!(warnings.len(), 1, "13 characters (26 bytes) is short");
    assert!(!warnings[0].contains("ääää"));

    let fx = fx.env("ATLAS_ENCRYPTION_PASSPHRASE", "ääääääääääääää");
    assert!(
        fx.load()
            .for_repository()
            .expect("valid")
            .warnings()
            .is_empty()
    );
}

#[test]
fn new_passphrase_comes_from_env_or_dotenv() {
    let fx = Fixture::new().write(".env", "ATLAS_NEW_ENCRYPTION_PASSPHRASE=from-dotenv-new\n");
    assert_eq!(
        fx.load()
            .new_passphrase()
            .map(|s| s.expose().to_owned())
            .as_deref(),
        Some("from-dotenv-new")
    );
    let fx = fx.env("ATLAS_NEW_ENCRYPTION_PASSPHRASE", "from-env-new");
    assert_eq!(
        fx.load()
            .new_passphrase()
            .map(|s| s.expose().to_owned())
            .as_deref(),
        Some("from-env-new")
    );
}

#[test]
fn debug_output_of_config_and_settings_shows_no_secrets() {
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", TENANT)
        .env("ATLAS_CLIENT_ID", CLIENT)
        .env("ATLAS_CLIENT_SECRET", "client-secret-VALUE")
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "passphrase-VALUE-long")
        .env("ATLAS_S3_ENDPOINT", "https://s3.example.com")
        .env("ATLAS_S3_ACCESS_KEY", "access")
        .env("ATLAS_S3_SECRET_KEY", "s3-secret-VALUE");
    let config = fx.load();
    let (repo, graph) = config.for_repository_and_graph().expect("valid");
    let debug = format!("{config:?} {repo:?} {graph:?}");
    for secret in [
        "client-secret-VALUE",
        "passphrase-VALUE-long",
        "s3-secret-VALUE",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked into {debug}");
    }
}

#[test]
fn kdf_comes_from_atlas_kdf_and_is_validated() {
    let fx = Fixture::new();
    assert_eq!(fx.load().kdf().expect("valid"), None);
    let fx = fx.write(".env", "ATLAS_KDF=scrypt-n14\n");
    assert_eq!(fx.load().kdf().expect("valid"), Some(KdfSetting::ScryptN14));
    let fx = fx.env("ATLAS_KDF", "Argon2id");
    assert_eq!(fx.load().kdf().expect("valid"), Some(KdfSetting::Argon2id));
    let fx = fx.env("ATLAS_KDF", "md5");
    let err = fx.load().kdf().unwrap_err();
    assert!(
        err.to_string().contains("scrypt, argon2id, scrypt-n14"),
        "{err}"
    );
}

#[test]
fn default_bucket_that_s3_would_refuse_is_a_problem() {
    // A valid tenant domain can still make `atlas-<tenant>` longer than S3's 63 characters;
    // the config check used to accept it and the first request failed instead.
    let long = "a-rather-long-subsidiary-name.northwind-traders-europe.onmicrosoft.com";
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", long)
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "a-long-enough-passphrase")
        .env("ATLAS_S3_ENDPOINT", "https://s3.example.com")
        .env("ATLAS_S3_ACCESS_KEY", "access")
        .env("ATLAS_S3_SECRET_KEY", "secret-key-value");
    let err = fx.load().for_repository().unwrap_err();
    let text = err.to_string();
    assert_eq!(problems(err), ["s3_bucket"]);
    assert!(text.contains("3 to 63 characters"), "{text}");
    assert!(text.contains("ATLAS_S3_BUCKET"), "{text}");

    let fx = fx.env("ATLAS_S3_BUCKET", "atlas-northwind");
    let StoreSettings::S3(s3) = fx.load().for_repository().expect("valid").store else {
        panic!("expected S3")
    };
    assert_eq!(s3.bucket, "atlas-northwind");
}

#[test]
fn ca_file_and_proxies_reach_both_s3_and_graph_settings() {
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", TENANT)
        .env("ATLAS_CLIENT_ID", CLIENT)
        .env("ATLAS_CLIENT_SECRET", "client-secret-VALUE")
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "passphrase-VALUE-long")
        .env("ATLAS_S3_ENDPOINT", "https://s3.example.com")
        .env("ATLAS_S3_ACCESS_KEY", "access")
        .env("ATLAS_S3_SECRET_KEY", "s3-secret-VALUE")
        .env("ATLAS_CA_FILE", "corp-ca.pem")
        .env(
            "HTTPS_PROXY",
            "http://proxyuser:proxy-PASSWORD@proxy.corp:3128",
        )
        .env("NO_PROXY", "localhost,.internal");
    let err = fx.load().for_repository_and_graph().unwrap_err();
    let text = err.to_string();
    assert_eq!(problems(err), ["ca_file"]);
    assert!(
        text.contains("corp-ca.pem") && text.contains("does not exist"),
        "{text}"
    );

    let fx = fx.write("corp-ca.pem", "-----BEGIN CERTIFICATE-----\n");
    let config = fx.load();
    let (repo, graph) = config.for_repository_and_graph().expect("valid");
    let StoreSettings::S3(s3) = &repo.store else {
        panic!("expected S3")
    };
    for net in [&s3.net, &graph.net] {
        assert_eq!(net.ca_files, [fx.cwd.join("corp-ca.pem")]);
        assert_eq!(
            net.https_proxy.as_ref().map(url::Url::as_str),
            Some("http://proxyuser:proxy-PASSWORD@proxy.corp:3128/")
        );
        assert_eq!(net.no_proxy.as_deref(), Some("localhost,.internal"));
    }
    // Unset addressing lets the store choose.
    assert_eq!(s3.force_path_style, None);
    let debug = format!("{config:?} {repo:?} {graph:?}");
    assert!(!debug.contains("proxy-PASSWORD"), "{debug}");
}

#[test]
fn a_proxy_that_is_not_an_http_url_is_a_problem_that_does_not_echo_it() {
    let fx = Fixture::new()
        .env("ATLAS_TENANT_ID", TENANT)
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "passphrase-VALUE-long")
        .env("ATLAS_S3_ENDPOINT", "https://s3.example.com")
        .env("ATLAS_S3_ACCESS_KEY", "access")
        .env("ATLAS_S3_SECRET_KEY", "s3-secret-VALUE")
        .env("https_proxy", "socks5://u:sock-PASSWORD@proxy:1080");
    let err = fx.load().for_repository().unwrap_err();
    let text = err.to_string();
    assert_eq!(problems(err), ["https_proxy"]);
    assert!(!text.contains("sock-PASSWORD"), "{text}");
}

#[test]
fn content_md5_is_off_unless_asked_for_in_the_file_or_the_environment() {
    let base = || {
        Fixture::new()
            .env("ATLAS_TENANT_ID", TENANT)
            .env("ATLAS_ENCRYPTION_PASSPHRASE", "passphrase-VALUE-long")
            .env("ATLAS_S3_ENDPOINT", "https://s3.example.com")
            .env("ATLAS_S3_ACCESS_KEY", "access")
            .env("ATLAS_S3_SECRET_KEY", "s3-secret-VALUE")
    };
    let s3 = |fx: &Fixture| match fx.load().for_repository().expect("valid").store {
        StoreSettings::S3(s3) => s3,
        StoreSettings::Local { .. } => panic!("expected S3"),
    };
    assert!(!s3(&base()).content_md5);
    assert!(s3(&base().env("ATLAS_S3_CONTENT_MD5", "true")).content_md5);
    assert!(s3(&base().write("atlas.config.json", r#"{"s3_content_md5": true}"#)).content_md5);
    let err = base()
        .env("ATLAS_S3_CONTENT_MD5", "maybe")
        .load()
        .for_repository()
        .unwrap_err();
    assert_eq!(problems(err), ["s3_content_md5"]);
}

#[test]
fn memory_budget_defaults_and_is_read_in_mib_from_the_file_or_the_environment() {
    let base = || {
        Fixture::new()
            .env("ATLAS_TENANT_ID", TENANT)
            .env("ATLAS_ENCRYPTION_PASSPHRASE", "passphrase-VALUE-long")
    };
    let budget = |fx: &Fixture| fx.load().for_repository().expect("valid").memory_budget;
    assert_eq!(budget(&base()), atlas_core::repo::DEFAULT_MEMORY_BUDGET);
    assert_eq!(
        budget(&base().env("ATLAS_MEMORY_BUDGET_MIB", "32")),
        32 << 20
    );
    assert_eq!(
        budget(&base().write("atlas.config.json", r#"{"memory_budget_mib": "200"}"#)),
        200 << 20
    );
    for bad in ["8", "lots", "-1"] {
        let err = base()
            .env("ATLAS_MEMORY_BUDGET_MIB", bad)
            .load()
            .for_repository()
            .unwrap_err();
        assert_eq!(problems(err), ["memory_budget_mib"], "{bad}");
    }
}
