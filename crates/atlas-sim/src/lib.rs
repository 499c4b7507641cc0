//! A Microsoft Graph + Microsoft Entra ID simulator for Atlas's tests, benchmarks and demo.
//!
//! Atlas cannot reach a real tenant in CI, so everything it does with Graph is exercised
//! against this simulator, which follows Microsoft's documentation (and `graph-api.md`,
//! the project's notes on it), not Atlas's client. Where the documentation is unconfirmed,
//! conflicting or silent, [`SimConfig`] has a knob for each variant. The project's
//! `docs/GRAPH.md` lists every endpoint served, the documentation page it follows and what
//! a client may rely on; `tests/it/` checks each against that page.
//!
//! - [`SimConfig`] describes the tenant (seeded, deterministic) and the service behaviour
//!   (limits, faults, granted permissions).
//! - [`Simulator::start`] serves it on 127.0.0.1 and returns a [`SimHandle`]: the same base
//!   URL hosts the token endpoint (`{base}/{tenant}/oauth2/v2.0/token`), MSAL discovery
//!   documents and Graph (`{base}/v1.0/…`).
//! - [`SimHandle`] is also the admin API (mutate mailboxes, dump them, counters, faults,
//!   certificates, token expiry), mirrored over HTTP under `{base}/_admin/…`.
//! - Besides mail, every mailbox has calendars, contacts, To Do lists, sticky notes, inbox
//!   rules, master categories and mailbox settings, served by the classic endpoints and
//!   by the mailbox import and export API (folders, items, their delta, `exportItems`,
//!   import sessions with pre-authenticated URLs); [`SimHandle::dump_pim`] and
//!   [`SimHandle::invitations`] let a test compare a restore and count meeting mail.
//!
//! Internally every Graph request — direct or inside `$batch` — runs the same pipeline:
//! injected faults → bearer token → permission → mailbox checks → per-mailbox throttling →
//! handler → request accounting.

// Protocol handlers read top to bottom like the documented flow they implement; splitting
// them to satisfy a line count would scatter one exchange over several functions.
#![allow(clippy::too_many_lines)]

mod admin;
mod auth;
mod classic;
mod config;
mod error;
mod folder_delta;
mod generate;
mod graph;
mod http;
mod items;
mod json;
mod limits;
mod mailbox_api;
mod mime;
mod mimeparse;
mod model;
mod pim_admin;
mod pim_gen;
mod route;
mod server;
mod stream;
mod write;

pub use admin::{
    AttachmentDump, FolderDump, MailboxDump, MessageDump, MessageUpdate, NewAttachment, NewMessage,
    UserInfo,
};
pub use classic::Invitation;
pub use config::{
    ConcurrencyScope, DeltaTopMode, FaultConfig, FolderDeltaMode, Limits, MailboxApiMode,
    SimConfig, roles,
};
pub use error::{Result, SimError};
pub use limits::{KindCounts, RequestCounters};
pub use model::{AccountKind, Addr};
pub use pim_admin::{
    CategoryDump, ExceptionDump, ItemAttachmentDump, ItemDump, PimDump, PimFolderDump,
};
pub use rsa::RsaPublicKey;
pub use server::{SimHandle, Simulator, banner, serve_forever};
