//! # atlas-core
//!
//! The heart of Atlas, a backup and restore engine for Microsoft 365 mailboxes: the
//! domain model, the ports, the encrypted deduplicated repository, and the services that
//! combine them. Nothing here talks HTTP, reads the environment, prints, sleeps or reads
//! the wall clock: storage, mail, progress and time all arrive through ports, so every
//! service runs in milliseconds against in-memory implementations.
//!
//! ## The layers, outside in
//!
//! **Ports** ([`ports`]) are the traits the outside world implements:
//!
//! - [`BlobStore`]: opaque bytes under keys, with create-if-absent writes (local
//!   directory, S3 and memory in `atlas-store`, all passing one conformance suite).
//! - [`MailSource`] and [`MailTarget`]: read a tenant (mailboxes, folders, delta pages,
//!   item content) and write into one for restore (the Graph client in `atlas-graph`, and
//!   `testing::MemoryTenant` behind the `testing` feature, both passing the suites in
//!   `testing::conformance`).
//! - [`Reporter`] (typed progress events; the CLI renders them) and [`Clock`].
//!
//! **The repository** ([`repo`]) turns a [`BlobStore`] into an encrypted, deduplicated,
//! crash-safe archive. [`Repository`] opens or creates one with a [`Passphrase`] and reads
//! it (snapshots, item lists, content by id, packs); [`repo::BackupSession`] is the one
//! leased writer of a mailbox run (`put_blob` → `flush` → `commit`: data, then index,
//! then the snapshot record). The store key layout is private to the repository;
//! `docs/FORMAT.md` describes every object byte by byte. [`open()`] is the one way in: it
//! tells an empty store, a current repository and a TypeScript Atlas 1.x bucket apart and
//! opens each (the last through a converted local cache).
//!
//! **Services** ([`service`]) are the use cases: [`service::backup`], `status`,
//! `restore`, `export` (save), `read`, `catalog` (list, stats), `verify`, `repair`,
//! `retention` (forget, delete, prune), `replicate` and `migrate`. Each takes options and
//! ports and returns a summary; none prints.
//!
//! **Export formats** ([`export`]) are pure conversions of the readable JSON a backup keeps
//! of non-mail items: events and tasks as iCalendar, contacts as vCard, any item as stable
//! JSON (docs/EXPORT.md).
//!
//! ## Where things are
//!
//! | Module | Holds |
//! | --- | --- |
//! | [`model`] | ids (newtypes), items of a kind, folders, snapshot records — plain serde values |
//! | [`ports`] | the traits above, each with its contract in the module doc |
//! | [`repo`] | keys, encryption, packs, index, sessions, leases, prune, repair, verify |
//! | [`service`] | the use cases, each in a file named after its command |
//! | [`open`](mod@open) | the one way in: detect what a store holds and open it |
//! | [`compat`] | TypeScript Atlas 1.x buckets: read-only reader, verify, MIME rebuild |
//! | [`export`] | iCalendar, vCard and JSON for non-mail items (pure functions) |
//! | [`error`] | [`Error`], the crate's one error enum |
//! | `testing` | `MemoryTenant` and the ports' conformance suites (feature `testing`) |
//!
//! The project's `docs/ARCHITECTURE.md` puts this crate next to the others and says where
//! each common kind of change belongs.
//!
//! ## Plan, then execute
//!
//! Services that change something are split in two: a *plan* is a plain value computed
//! before anything is written (backup's from the source; restore's, forget's and repair's
//! from the repository alone) — what `--dry-run` prints and what tests assert — and
//! *execute* carries it out: [`service::backup::plan`] →
//! [`service::backup::execute`] (which mailboxes and folders, limits, skip versus fail,
//! Object Lock), [`service::restore::plan`] →
//! [`service::restore::execute`], [`service::retention::plan_forget`] →
//! [`service::retention::execute_forget`], [`service::repair::plan`] →
//! [`service::repair::execute`]. Policy lives in the plan, in pure functions that need no
//! ports (e.g. the keep rules of `forget`); execute holds no decisions of its own.
//!
//! ## Back up a mailbox and restore it
//!
//! With the in-memory tenant and store (the `testing` feature and `atlas-store`):
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//!
//! use atlas_core::ports::{BlobStore, FixedClock, MailSource, NullReporter};
//! use atlas_core::service::catalog::SnapshotSelector;
//! use atlas_core::service::restore::{self, RestoreOptions};
//! use atlas_core::service::{BackupOptions, Cancel, backup_mailbox};
//! use atlas_core::testing::MemoryTenant;
//! use atlas_core::{KdfChoice, Passphrase, Repository};
//!
//! // A tenant with one mailbox of six messages, and an empty store.
//! let tenant = Arc::new(MemoryTenant::generate(7, 1, 6));
//! let store: Arc<dyn BlobStore> = Arc::new(atlas_store::MemoryStore::new());
//! let repo = Repository::init(
//!     store,
//!     "contoso",
//!     &Passphrase::new("correct horse battery staple"),
//!     KdfChoice::SCRYPT_MINIMUM, // fast for examples; the default is much stronger
//! )
//! .await?;
//!
//! // Back up: everything goes through the ports.
//! let clock = Arc::new(FixedClock::new("2026-03-10T14:30:00Z".parse()?));
//! let mailbox = tenant.resolve_mailbox("user1@contoso.com").await?;
//! let backup = backup_mailbox(
//!     &repo,
//!     tenant.clone(),
//!     &mailbox,
//!     &BackupOptions::default(),
//!     clock,
//!     &NullReporter,
//!     &Cancel::new(),
//! )
//! .await?;
//! assert!(backup.complete);
//! assert_eq!(backup.downloaded, 6);
//!
//! // Restore the newest snapshot: plan (a plain value), then execute.
//! let selector = SnapshotSelector::Latest {
//!     mailbox: mailbox.id.clone(),
//!     as_of: None,
//! };
//! let plan = restore::plan(&repo, &RestoreOptions::new(selector)).await?;
//! let restored = restore::execute(&plan, &repo, tenant.clone(), &NullReporter, &Cancel::new())
//!     .await?;
//! assert!(restored.complete);
//! assert_eq!(restored.created, 6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## Errors and secrets
//!
//! One error enum, [`Error`], with variants that say what failed and where (a wrong
//! passphrase is not a damaged key blob, a missing object is not an unreachable store);
//! callers match on variants, never on messages. Secrets are [`SecretString`] and
//! [`Passphrase`]: redacted `Debug`, no `Display`, zeroed on drop.

pub mod compat;
pub mod error;
pub mod export;
pub mod model;
pub mod open;
pub mod ports;
pub mod repo;
mod secret;
pub mod service;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result};
pub use model::{ContentId, FolderId, ItemId, ItemMeta, MailboxId, SnapshotId, SnapshotRecord};
pub use open::{Access, Opened, open};
pub use ports::{BlobStore, Clock, MailSource, MailTarget, Reporter};
pub use repo::{KdfChoice, Passphrase, Repository};
pub use secret::SecretString;

/// Threads for the async runtime's blocking pool in the processes that run this engine
/// (the `atlas` binary, `atlas-bench`). The engine's blocking work — hashing, compressing
/// and encrypting blobs, sealing packs, local-directory I/O — is CPU-bound or short, so
/// more threads than this add no speed on small machines, but each thread that allocates
/// gets its own glibc malloc arena, and every arena keeps freed memory of its own: with
/// tokio's default (up to 512, ~14 during a 4-mailbox backup) the arenas held as much
/// memory again as the run used (docs/BENCHMARKS.md, heap profile). Nothing the engine
/// runs there waits for another blocking task, so a small pool cannot deadlock.
pub const MAX_BLOCKING_THREADS: usize = 4;
