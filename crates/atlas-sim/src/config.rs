//! Simulator configuration: the tenant's shape and the service's behaviour.
//!
//! Every behaviour that `graph-api.md` marks as unconfirmed or conflicting is a knob here,
//! so tests can pin each variant a real tenant might show.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Application permissions (app roles) the simulated tenant may grant to the app.
pub mod roles {
    /// Read all users' directory objects.
    pub const USER_READ_ALL: &str = "User.Read.All";
    /// Read all directory data (also enough for `/users`).
    pub const DIRECTORY_READ_ALL: &str = "Directory.Read.All";
    /// Read mail metadata only (no bodies, attachments or extended properties).
    pub const MAIL_READ_BASIC_ALL: &str = "Mail.ReadBasic.All";
    /// Read mail in all mailboxes.
    pub const MAIL_READ: &str = "Mail.Read";
    /// Read and write mail in all mailboxes (needed for restore).
    pub const MAIL_READ_WRITE: &str = "Mail.ReadWrite";
    /// Read usage reports.
    pub const REPORTS_READ_ALL: &str = "Reports.Read.All";
    /// Read calendars in all mailboxes.
    pub const CALENDARS_READ: &str = "Calendars.Read";
    /// Read and write calendars in all mailboxes.
    pub const CALENDARS_READ_WRITE: &str = "Calendars.ReadWrite";
    /// Read contacts in all mailboxes.
    pub const CONTACTS_READ: &str = "Contacts.Read";
    /// Read and write contacts in all mailboxes.
    pub const CONTACTS_READ_WRITE: &str = "Contacts.ReadWrite";
    /// Read all users' To Do tasks.
    pub const TASKS_READ_ALL: &str = "Tasks.Read.All";
    /// Read and write all users' To Do tasks.
    pub const TASKS_READ_WRITE_ALL: &str = "Tasks.ReadWrite.All";
    /// Read all users' mailbox settings (also inbox rules and master categories).
    pub const MAILBOX_SETTINGS_READ: &str = "MailboxSettings.Read";
    /// Read and write all users' mailbox settings.
    pub const MAILBOX_SETTINGS_READ_WRITE: &str = "MailboxSettings.ReadWrite";
    /// Mailbox import/export API: read folders.
    pub const MAILBOX_FOLDER_READ_ALL: &str = "MailboxFolder.Read.All";
    /// Mailbox import/export API: read and write folders.
    pub const MAILBOX_FOLDER_READ_WRITE_ALL: &str = "MailboxFolder.ReadWrite.All";
    /// Mailbox import/export API: read items.
    pub const MAILBOX_ITEM_READ_ALL: &str = "MailboxItem.Read.All";
    /// Mailbox import/export API: export items.
    pub const MAILBOX_ITEM_EXPORT_ALL: &str = "MailboxItem.Export.All";
    /// Mailbox import/export API: import and export items.
    pub const MAILBOX_ITEM_IMPORT_EXPORT_ALL: &str = "MailboxItem.ImportExport.All";
}

/// Everything that shapes a simulated tenant and the service in front of it.
///
/// `Default` gives a small demo tenant (6 mailboxes × 40 messages, no faults, documented limits).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Seed for the tenant generator and for random faults; same seed and sizes give a
    /// byte-identical tenant.
    pub seed: u64,
    /// Number of accounts that have a mailbox (licensed users, shared mailboxes, one disabled
    /// account when there are at least three).
    pub users: usize,
    /// How many of `users` are shared mailboxes (no license).
    pub shared_mailboxes: usize,
    /// Messages generated per mailbox.
    pub messages_per_user: usize,
    /// Also create an unlicensed user and a licensed user without an Exchange plan; both have
    /// no mailbox and get `MailboxNotEnabledForRESTAPI` on mail paths.
    pub accounts_without_mailbox: bool,
    /// Largest generated attachment in bytes. A few attachments are near this size when
    /// `large_attachments` is on; keep it small for fast tests.
    pub max_attachment_bytes: usize,
    /// Generate a few large attachments (up to `max_attachment_bytes`, e.g. 40 MB).
    pub large_attachments: bool,
    /// Number of messages (spread over mailboxes) whose `$value` always fails.
    pub broken_mime_messages: usize,
    /// Instant used as "now" when generating message dates, so dates do not depend on the clock.
    pub generated_at: DateTime<Utc>,
    /// Tenant GUID; `None` derives one from the seed.
    pub tenant_id: Option<String>,
    /// Tenant's initial domain (usable instead of the GUID at the token endpoint).
    pub tenant_domain: String,
    /// Application (client) id; `None` derives one from the seed.
    pub client_id: Option<String>,
    /// Client secret; `None` derives one from the seed.
    pub client_secret: Option<String>,
    /// Application permissions granted to the app in this tenant (see [`roles`]).
    pub granted_roles: BTreeSet<String>,
    /// Access-token lifetime; short values exercise token renewal mid-run.
    #[serde(with = "secs")]
    pub token_lifetime: Duration,
    /// Clock skew tolerated on client-assertion `nbf`/`exp`.
    #[serde(with = "secs")]
    pub assertion_clock_skew: Duration,
    /// Service limits and their variants.
    pub limits: Limits,
    /// Injected faults; can be replaced at runtime.
    pub faults: FaultConfig,
    /// Status code for `ErrorFolderExists` (400 observed most, 409 by some clients).
    pub folder_exists_status: u16,
    /// Status code for `MailboxNotEnabledForRESTAPI` (404 mostly, 400 seen).
    pub mailbox_not_enabled_status: u16,
    /// Default page size of message and folder delta when no `Prefer: odata.maxpagesize` is
    /// sent.
    pub delta_default_page_size: usize,
    /// Largest accepted `odata.maxpagesize` for message and folder delta (larger values are
    /// clamped).
    pub delta_max_page_size: usize,
    /// How `$top` on message delta behaves (documented vs observed variants).
    pub delta_top: DeltaTopMode,
    /// What `mailFolders/delta` reports where its documentation is silent.
    pub folder_delta: FolderDeltaMode,
    /// Open variants of the mailbox import and export API.
    pub mailbox_api: MailboxApiMode,
}

/// What the mailbox import and export API pages leave open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MailboxApiMode {
    /// `GET …/mailboxes/{id}/folders`: api/mailbox-list-folders.md says "all the
    /// mailboxFolder objects in the specified mailbox" but its example lists "the
    /// collection directly under the root folder". Off (default): the root's children,
    /// like the example; on: every folder.
    pub list_folders_whole_tree: bool,
    /// How long an import URL stays valid (the pages give `expirationDateTime` but no
    /// lifetime).
    #[serde(with = "secs")]
    pub import_session_lifetime: Duration,
    /// Whether this API takes a message's immutable id (`Prefer: IdType="ImmutableId"` of
    /// the classic endpoints) where it takes a mailboxItem id. Its pages say `itemIds` are
    /// "identifiers of mailboxItem objects" and show regular ids (`AAMk…`); nothing says an
    /// immutable id is accepted. Off (default): refused as not found (`ErrorItemNotFound`),
    /// so a client learns a message's mailboxItem id from this API's own calls.
    pub accepts_immutable_ids: bool,
}

impl Default for MailboxApiMode {
    fn default() -> Self {
        Self {
            list_folders_whole_tree: false,
            import_session_lifetime: Duration::from_secs(3600),
            accepts_immutable_ids: false,
        }
    }
}

/// The variants of `mailFolders/delta` the documentation leaves open (graph-api.md §4.4,
/// §15.6; api/mailfolder-delta.md documents only paging, `$select` and the state tokens).
///
/// The default is the variant a client can least rely on beyond the tree itself: hidden
/// folders and folders whose content changed are not reported, so a client that needs them
/// must learn them another way, and a test can switch each on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FolderDeltaMode {
    /// Every folder below the root (`true`, a flat list with `parentFolderId`), or only the
    /// root's children like `GET mailFolders`.
    pub whole_tree: bool,
    /// Whether hidden folders (`isHidden`) are reported.
    pub include_hidden: bool,
    /// Whether a folder whose content changed (messages added, removed, moved in or out or
    /// changed; child folders added or removed) is reported again, its counts having
    /// changed. Off: only its creation, rename and deletion are.
    pub content_changes: bool,
}

impl Default for FolderDeltaMode {
    fn default() -> Self {
        Self {
            whole_tree: true,
            include_hidden: false,
            content_changes: false,
        }
    }
}

/// The observed variants of `$top` on message delta (graph-api.md §5.1, a conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaTopMode {
    /// `$top` is ignored (most reports).
    Ignored,
    /// `$top` sets the page size, like `odata.maxpagesize`.
    PageSize,
}

/// Per-mailbox and per-request limits (graph-api.md §9, §8).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Concurrent requests allowed; `0` disables the check.
    pub concurrent_requests: usize,
    /// Whether the concurrency limit is per app+mailbox (older doc) or per app (current doc).
    pub concurrency_scope: ConcurrencyScope,
    /// Status used for concurrency throttling (429 documented; 503 observed by one project).
    pub concurrency_status: u16,
    /// Requests allowed per mailbox within `request_window`; `0` disables the check.
    pub requests_per_window: usize,
    /// Window for `requests_per_window` (10 minutes documented).
    #[serde(with = "secs")]
    pub request_window: Duration,
    /// Upload bytes (POST/PUT/PATCH bodies) allowed per mailbox within `upload_window`;
    /// `0` disables the check.
    pub upload_bytes_per_window: u64,
    /// Window for `upload_bytes_per_window` (5 minutes documented).
    #[serde(with = "secs")]
    pub upload_window: Duration,
    /// Largest accepted Graph request body (4 MB front-end cap).
    pub max_request_bytes: usize,
    /// Smallest attachment accepted by `createUploadSession` (3 MB).
    pub upload_session_min_bytes: u64,
    /// Largest attachment accepted by `createUploadSession` (150 MB).
    pub upload_session_max_bytes: u64,
    /// Largest number of requests in one `$batch`.
    pub batch_max_requests: usize,
    /// Inner batch requests run in parallel (Outlook runs up to 4).
    pub batch_parallelism: usize,
    /// Most item ids one `exportItems` call accepts (20, api/mailbox-exportitems.md).
    pub export_max_items: usize,
}

/// Scope of the concurrency limit (graph-api.md §9.1, a conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyScope {
    /// Counted per mailbox.
    PerMailbox,
    /// Counted across all mailboxes of the app.
    PerApp,
}

/// Faults injected into Graph requests (not into the token endpoint or admin API).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    /// Fixed delay added to every Graph request.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// Probability (0.0–1.0) that a Graph request gets a random 429, 503 or 504.
    pub error_rate: f64,
    /// `Retry-After` seconds on injected 429/503 responses.
    pub retry_after_secs: u64,
    /// Probability (0.0–1.0) that a Graph request hangs.
    pub hang_rate: f64,
    /// How long a hung request waits before answering; `None` never answers.
    #[serde(with = "opt_millis")]
    pub hang_delay: Option<Duration>,
    /// Probability (0.0–1.0) that a write (any method but GET) takes effect and its answer
    /// is then lost: the connection stays silent (for `hang_delay`, or until shutdown) after
    /// the handler ran. What a client sees when a connection drops after sending: the
    /// change happened, and only a look can tell.
    pub lost_answer_rate: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrent_requests: 4,
            concurrency_scope: ConcurrencyScope::PerMailbox,
            concurrency_status: 429,
            requests_per_window: 10_000,
            request_window: Duration::from_secs(600),
            upload_bytes_per_window: 150 * 1024 * 1024,
            upload_window: Duration::from_secs(300),
            max_request_bytes: 4 * 1024 * 1024,
            upload_session_min_bytes: 3 * 1024 * 1024,
            upload_session_max_bytes: 150 * 1024 * 1024,
            batch_max_requests: 20,
            batch_parallelism: 4,
            export_max_items: 20,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            users: 6,
            shared_mailboxes: 1,
            messages_per_user: 40,
            accounts_without_mailbox: true,
            max_attachment_bytes: 2 * 1024 * 1024,
            large_attachments: false,
            broken_mime_messages: 0,
            generated_at: Utc
                .with_ymd_and_hms(2025, 3, 1, 12, 0, 0)
                .single()
                .expect("invariant: fixed valid date"),
            tenant_id: None,
            tenant_domain: "contoso.onmicrosoft.com".to_owned(),
            client_id: None,
            client_secret: None,
            granted_roles: [
                roles::USER_READ_ALL,
                roles::MAIL_READ_WRITE,
                roles::REPORTS_READ_ALL,
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
            token_lifetime: Duration::from_secs(3599),
            assertion_clock_skew: Duration::from_secs(300),
            limits: Limits::default(),
            faults: FaultConfig::default(),
            folder_exists_status: 400,
            mailbox_not_enabled_status: 404,
            delta_default_page_size: 10,
            delta_max_page_size: 1000,
            delta_top: DeltaTopMode::Ignored,
            folder_delta: FolderDeltaMode::default(),
            mailbox_api: MailboxApiMode::default(),
        }
    }
}

impl SimConfig {
    /// A tenant of `users` mailboxes with `messages_per_user` messages each, other settings default.
    pub fn with_size(seed: u64, users: usize, messages_per_user: usize) -> Self {
        Self {
            seed,
            users,
            messages_per_user,
            ..Self::default()
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    #[allow(clippy::ref_option)] // serde's `with` signature requires `&Option<T>`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
