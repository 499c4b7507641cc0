//! The one integration-test binary of `atlas-store`: the conformance suite against every
//! backend, then backend-specific behaviour.

mod conformance;
mod fault;
mod local;
mod s3;
