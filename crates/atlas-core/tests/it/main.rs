//! Integration tests of the repository (one binary, modules by topic).

mod common;
mod crash;
mod dedup;
mod keys;
mod leases;
mod roundtrip;
mod tamper;
mod v1_vectors;
