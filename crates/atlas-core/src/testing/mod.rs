//! Test support (feature `testing`): an in-memory tenant behind the source and target
//! ports, the test messages it serves, and the ports' conformance suites.
//!
//! Services are tested against [`MemoryTenant`] in milliseconds; the same conformance
//! suites ([`conformance::source`], [`conformance::target`]) run against it and against
//! the Graph adapter over the simulator, which is what makes a service test on the memory
//! tenant say something about Graph. Enable the feature in a crate's dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! atlas-core = { path = "../atlas-core", features = ["testing"] }
//! ```

mod config;
pub mod conformance;
mod mime;
mod tenant;

pub use config::{ConfigDump, MemoryConfig};
pub use mime::{AttachmentSpec, BodySpec, MessageSpec};
pub use tenant::{Fault, FolderDump, ItemDump, MailboxDump, MemoryTenant, Op, Restored};
