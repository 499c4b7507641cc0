//! Reading repositories written by TypeScript Atlas 1.3 (the checked-in fixture bucket):
//! detect/open/list/as-of, v1-native verify with damage naming, MIME rebuild checked by
//! Python's `email` package, and migration into a v2 repository (idempotent, resumable).

// Test helpers outside `#[test]` functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod common;
mod migrate;
mod mime;
mod open;
mod reader;
