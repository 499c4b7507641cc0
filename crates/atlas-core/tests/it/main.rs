//! Integration tests of the repository (one binary, modules by topic).

// Test helpers outside `#[test]` functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod common;
mod conformance;
mod crash;
mod dedup;
mod format_fixture;
mod keys;
mod leases;
mod prune;
mod replicate;
mod roundtrip;
mod services;
mod tamper;
mod v1;
mod v1_vectors;
