//! Ports: the traits through which the core reaches the outside world.
//!
//! Implementations live outside the core (`atlas-store`, `atlas-graph`, the CLI); the core
//! only sees these traits, so services can be tested against in-memory implementations.

pub mod blob_store;
pub mod clock;
pub mod mail;
pub mod reporter;
pub mod target;

pub use blob_store::{
    BlobStore, CopySource, DefaultRetention, LockMode, LockStatus, ObjectMeta, PutMode, PutOptions,
    Retention, StoreError, StoreKey,
};
pub use clock::{Clock, FixedClock, SystemClock};
pub use mail::{
    DeltaCursor, DeltaNext, DeltaPage, EmailAddress, FlagStatus, FolderOptions, Importance,
    MailSource, MailboxKind, MimeStream, SourceError, SourceFolder, SourceMailbox, SourceMessage,
};
pub use reporter::{Event, NullReporter, Reporter};
pub use target::{
    MailTarget, RestoreAttachment, RestoreBody, RestoreMark, RestoreMessage, TargetAttachment,
    TargetError, TargetFolder, TargetMailbox, TargetMessage,
};
