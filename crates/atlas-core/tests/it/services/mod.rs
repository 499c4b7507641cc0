//! Integration tests of the services: backup, status and restore on the memory tenant; the
//! offline ones (list, read, verify, repair, save, retention) on a hand-built repository.

// Test helpers outside `#[test]` functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod backup;
mod backup_plan;
mod common;
mod config_restore;
mod export;
mod kinds;
mod pieces;
mod read_list;
mod repair;
mod restore;
mod retention;
mod verify;
