//! Integration tests of the offline services: list, read, verify, save (export), retention.

// Test helpers outside `#[test]` functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod common;
mod export;
mod read_list;
mod repair;
mod retention;
mod verify;
