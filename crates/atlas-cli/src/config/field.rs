//! The field registry: every setting Atlas reads, with its config-file key and its
//! environment variable, plus the few variables that are not per-tenant fields.

/// Environment variable selecting a tenant of a multi-tenant config file (like `-t`).
pub const TENANT_SELECTOR_ENV: &str = "ATLAS_TENANT";
/// Environment variable carrying the new passphrase for `atlas key passwd`.
pub const NEW_PASSPHRASE_ENV: &str = "ATLAS_NEW_ENCRYPTION_PASSPHRASE";
/// Environment variable choosing the KDF for new or re-wrapped keys (like `--kdf`).
pub const KDF_ENV: &str = "ATLAS_KDF";
/// Environment variable naming extra CA certificates to trust ([`Field::CaFile`]).
pub const CA_FILE_ENV: &str = "ATLAS_CA_FILE";
/// The conventional proxy variables, read in this order (upper case wins over lower case,
/// as curl does for all but `http_proxy`). Not `ATLAS_*`: every HTTP tool shares them.
pub const HTTPS_PROXY_ENV: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
/// Proxy for plain-http endpoints (a loopback test server seldom needs one).
pub const HTTP_PROXY_ENV: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
/// Hosts reached without a proxy.
pub const NO_PROXY_ENV: [&str; 2] = ["NO_PROXY", "no_proxy"];
/// The index Kubernetes gives each pod of an Indexed Job (0-based), for
/// `atlas backup --shard auto/N`. Not `ATLAS_*`: the Job controller names it.
pub const JOB_COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Which key derivation function wraps a new or re-wrapped data key.
///
/// Named settings rather than raw parameters: an administrator picks a well-chosen
/// default; `ScryptN14` exists so that test suites do not spend seconds per KDF run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KdfSetting {
    /// scrypt N = 2^16, r = 8, p = 1: the default, also readable by Atlas 1.x.
    #[default]
    Scrypt,
    /// Argon2id, 64 MiB, 3 passes.
    Argon2id,
    /// scrypt N = 2^14, the cheapest setting allowed. For tests only.
    ScryptN14,
}

impl KdfSetting {
    /// The accepted spellings, for messages and `--help`.
    pub const NAMES: &'static str = "scrypt, argon2id, scrypt-n14";
}

impl std::str::FromStr for KdfSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scrypt" => Ok(Self::Scrypt),
            "argon2id" => Ok(Self::Argon2id),
            "scrypt-n14" => Ok(Self::ScryptN14),
            _ => Err(format!("unknown KDF; expected one of {}", Self::NAMES)),
        }
    }
}

/// A setting Atlas reads: its config-file key and its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// Entra ID tenant (directory) id or primary domain.
    TenantId,
    /// Application (client) id of the app registration.
    ClientId,
    /// Client secret value.
    ClientSecret,
    /// Path of a PEM certificate for certificate authentication.
    ClientCertificate,
    /// Path of the PEM private key matching `ClientCertificate`.
    ClientKey,
    /// Passphrase that wraps the repository's data key.
    EncryptionPassphrase,
    /// Microsoft Graph base URL.
    GraphEndpoint,
    /// Identity platform base URL.
    AuthorityHost,
    /// Scope of the app-only token (default: Graph's resource for the endpoint's cloud).
    GraphScope,
    /// Seconds a Graph request may take before it is abandoned and retried (idempotent
    /// requests) — hung connections must not stall a nightly run.
    GraphTimeout,
    /// Local repository directory.
    Repository,
    /// S3 endpoint URL.
    S3Endpoint,
    /// S3 access key id.
    S3AccessKey,
    /// S3 secret access key.
    S3SecretKey,
    /// S3 region.
    S3Region,
    /// S3 bucket (default: one per tenant).
    S3Bucket,
    /// S3 addressing: `true` path-style, `false` virtual-hosted; unset picks (path-style
    /// except on AWS's own endpoints).
    S3ForcePathStyle,
    /// Send `Content-MD5` with S3 uploads instead of a CRC32C checksum (servers that need
    /// it; costs an MD5 pass over every upload).
    S3ContentMd5,
    /// A PEM file of extra CA certificates to trust (a private CA, TLS inspection), for
    /// S3 and Graph alike.
    CaFile,
    /// The tenant-wide memory budget of a backup run, MiB (packs being filled and
    /// uploaded, downloads in flight).
    MemoryBudget,
    /// How much of each message a backup keeps: `mime` or `full` (MIME and the export
    /// stream), like `atlas backup --fidelity` (the flag wins).
    Fidelity,
}

impl Field {
    /// Every field, in the order problems are reported.
    pub const ALL: [Field; 21] = [
        Field::TenantId,
        Field::ClientId,
        Field::ClientSecret,
        Field::ClientCertificate,
        Field::ClientKey,
        Field::EncryptionPassphrase,
        Field::GraphEndpoint,
        Field::AuthorityHost,
        Field::GraphScope,
        Field::GraphTimeout,
        Field::Repository,
        Field::S3Endpoint,
        Field::S3AccessKey,
        Field::S3SecretKey,
        Field::S3Region,
        Field::S3Bucket,
        Field::S3ForcePathStyle,
        Field::S3ContentMd5,
        Field::CaFile,
        Field::MemoryBudget,
        Field::Fidelity,
    ];

    /// The snake_case key in a config file.
    pub fn key(self) -> &'static str {
        match self {
            Field::TenantId => "tenant_id",
            Field::ClientId => "client_id",
            Field::ClientSecret => "client_secret",
            Field::ClientCertificate => "client_certificate",
            Field::ClientKey => "client_key",
            Field::EncryptionPassphrase => "encryption_passphrase",
            Field::GraphEndpoint => "graph_endpoint",
            Field::AuthorityHost => "authority_host",
            Field::GraphScope => "graph_scope",
            Field::GraphTimeout => "graph_timeout",
            Field::Repository => "repository",
            Field::S3Endpoint => "s3_endpoint",
            Field::S3AccessKey => "s3_access_key",
            Field::S3SecretKey => "s3_secret_key",
            Field::S3Region => "s3_region",
            Field::S3Bucket => "s3_bucket",
            Field::S3ForcePathStyle => "s3_force_path_style",
            Field::S3ContentMd5 => "s3_content_md5",
            Field::CaFile => "ca_file",
            Field::MemoryBudget => "memory_budget_mib",
            Field::Fidelity => "fidelity",
        }
    }

    /// The environment variable (also read from `.env`).
    pub fn env(self) -> &'static str {
        match self {
            Field::TenantId => "ATLAS_TENANT_ID",
            Field::ClientId => "ATLAS_CLIENT_ID",
            Field::ClientSecret => "ATLAS_CLIENT_SECRET",
            Field::ClientCertificate => "ATLAS_CLIENT_CERTIFICATE",
            Field::ClientKey => "ATLAS_CLIENT_KEY",
            Field::EncryptionPassphrase => "ATLAS_ENCRYPTION_PASSPHRASE",
            Field::GraphEndpoint => "ATLAS_GRAPH_ENDPOINT",
            Field::AuthorityHost => "ATLAS_AUTHORITY_HOST",
            Field::GraphScope => "ATLAS_GRAPH_SCOPE",
            Field::GraphTimeout => "ATLAS_GRAPH_TIMEOUT",
            Field::Repository => "ATLAS_REPOSITORY",
            Field::S3Endpoint => "ATLAS_S3_ENDPOINT",
            Field::S3AccessKey => "ATLAS_S3_ACCESS_KEY",
            Field::S3SecretKey => "ATLAS_S3_SECRET_KEY",
            Field::S3Region => "ATLAS_S3_REGION",
            Field::S3Bucket => "ATLAS_S3_BUCKET",
            Field::S3ForcePathStyle => "ATLAS_S3_FORCE_PATH_STYLE",
            Field::S3ContentMd5 => "ATLAS_S3_CONTENT_MD5",
            Field::CaFile => CA_FILE_ENV,
            Field::MemoryBudget => "ATLAS_MEMORY_BUDGET_MIB",
            Field::Fidelity => "ATLAS_FIDELITY",
        }
    }

    /// Whether a config file gives the value as a JSON boolean.
    pub(super) fn is_bool(self) -> bool {
        matches!(self, Field::S3ForcePathStyle | Field::S3ContentMd5)
    }

    /// Whether the value must be held as a [`SecretString`](atlas_core::SecretString) and never shown.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Field::ClientSecret | Field::EncryptionPassphrase | Field::S3SecretKey
        )
    }

    pub(super) fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }

    /// S3 fields whose presence selects the S3 store.
    pub(super) fn selects_s3(self) -> bool {
        matches!(
            self,
            Field::S3Endpoint
                | Field::S3AccessKey
                | Field::S3SecretKey
                | Field::S3Region
                | Field::S3Bucket
                | Field::S3ForcePathStyle
                | Field::S3ContentMd5
        )
    }
}
