//! Processes as a port: who holds a lease, and whether that process still runs.
//!
//! A lease records the process that took it. A later writer on the same machine can then
//! tell a lease whose holder was killed (SIGKILL, OOM, a reboot of the container) from one
//! that is in use, and take it over at once instead of waiting for it to expire. The core
//! cannot look at processes itself (no side channels), so the binary passes an
//! implementation in; [`NoProcesses`] (the default) can tell nothing, and leases then only
//! end by expiring.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

/// The process that holds a lease, as recorded in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HolderProcess {
    /// Which process table the pid belongs to: the same value means the same kernel boot
    /// and the same pid namespace (a container on one host has its own). Opaque.
    pub host: String,
    /// Process id in that table.
    pub pid: u32,
    /// When the process started, in the table's own units: a pid that was reused by a
    /// later process has another start time.
    pub start: u64,
}

/// What a probe can say about a recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It still runs.
    Alive,
    /// It is gone for sure (same process table, and no such pid with that start time).
    Gone,
    /// Cannot tell (another machine or container, or no way to look).
    Unknown,
}

/// Looks at the processes of this machine.
pub trait ProcessProbe: Send + Sync + Debug {
    /// This process, to record in the leases it takes; `None` when it cannot be identified.
    fn current(&self) -> Option<HolderProcess>;

    /// Whether the recorded process still runs. Must answer [`Liveness::Gone`] only when
    /// sure: a lease is broken on that answer.
    fn liveness(&self, process: &HolderProcess) -> Liveness;
}

/// A probe that knows nothing: leases end only by expiring.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProcesses;

impl ProcessProbe for NoProcesses {
    fn current(&self) -> Option<HolderProcess> {
        None
    }

    fn liveness(&self, _process: &HolderProcess) -> Liveness {
        Liveness::Unknown
    }
}

/// A probe for tests: this "process" is `current`, and exactly the processes in `alive`
/// (plus `current`) run on its host.
#[derive(Debug, Clone)]
pub struct FixedProcesses {
    /// The process that takes leases through this probe.
    pub current: HolderProcess,
    /// Other processes of the same host that still run.
    pub alive: Vec<HolderProcess>,
}

impl ProcessProbe for FixedProcesses {
    fn current(&self) -> Option<HolderProcess> {
        Some(self.current.clone())
    }

    fn liveness(&self, process: &HolderProcess) -> Liveness {
        if process.host != self.current.host {
            Liveness::Unknown
        } else if *process == self.current || self.alive.contains(process) {
            Liveness::Alive
        } else {
            Liveness::Gone
        }
    }
}
