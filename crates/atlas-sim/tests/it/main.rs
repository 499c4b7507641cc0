//! Conformance suite for the Graph simulator, written against graph-api.md (the documented
//! service behaviour), not against Atlas's client.

// Short names (u, m, r, s, v) follow the HTTP exchange they describe.
#![allow(clippy::many_single_char_names)]
// A conformance scenario reads top to bottom like the documented exchange it checks.
#![allow(clippy::too_many_lines)]

mod auth;
mod common;
mod delta;
mod directory;
mod faults;
mod folder_delta;
mod mail;
mod mailbox_api;
mod pim;
mod routing;
mod writes;
