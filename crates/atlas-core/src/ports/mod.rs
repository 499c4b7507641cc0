//! Ports: the traits through which the core reaches the outside world.
//!
//! Implementations live outside the core (`atlas-store`, `atlas-graph`, the CLI) or, for
//! tests, in `atlas_core::testing` (the `testing` feature); the core only sees these
//! traits, so services can be tested against in-memory implementations. Each port ships a conformance suite that
//! every implementation must pass.

pub mod blob_store;
pub mod clock;
pub mod config;
pub mod import;
pub mod mail;
pub mod process;
pub mod reporter;
pub mod target;

pub use blob_store::{
    BlobStore, CopySource, DefaultRetention, LockMode, LockStatus, ObjectMeta, PutMode, PutOptions,
    Retention, StoreError, StoreKey,
};
pub use clock::{Clock, FixedClock, SystemClock};
pub use config::ConfigTarget;
pub use import::{ItemImport, LedgerRecord, MemoryLedger, RestoreLedger};
pub use mail::{
    ContentStream, DeltaCursor, DeltaNext, DeltaPage, EmailAddress, FlagStatus, FolderListing,
    FolderOptions, Importance, ItemMetadata, MailMetadata, MailSource, MailboxKind, SourceError,
    SourceFolder, SourceItem, SourceMailbox,
};
pub use process::{FixedProcesses, HolderProcess, Liveness, NoProcesses, ProcessProbe};
pub use reporter::{Event, NullReporter, Reporter, Task};
pub use target::{
    MailTarget, RestoreAttachment, RestoreBody, RestoreMark, RestoreMessage, TargetAttachment,
    TargetError, TargetFolder, TargetItem,
};
