//! This machine's processes, for telling a lease whose holder was killed from one in use
//! ([`atlas_core::ports::ProcessProbe`]).
//!
//! On Linux a process is identified by its process table — the kernel's boot id plus the
//! pid namespace (a container has its own, so two containers on one host never confuse
//! their pids) — its pid, and its start time in clock ticks since boot (field 22 of
//! `/proc/<pid>/stat`), so a pid reused by a later process is not mistaken for the holder.
//! A holder is reported gone only when it is in this very table and no process with its
//! pid and start time runs (a zombie counts as gone). Elsewhere nothing can be told, and
//! leases end by expiring.

use atlas_core::ports::{HolderProcess, Liveness, ProcessProbe};

/// The probe the binary gives every repository it opens.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalProcesses;

impl ProcessProbe for LocalProcesses {
    fn current(&self) -> Option<HolderProcess> {
        let host = process_table()?;
        let pid = std::process::id();
        let start = start_time(&std::fs::read_to_string("/proc/self/stat").ok()?)?.0;
        Some(HolderProcess { host, pid, start })
    }

    fn liveness(&self, process: &HolderProcess) -> Liveness {
        if process_table().as_deref() != Some(process.host.as_str()) {
            return Liveness::Unknown;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", process.pid)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Liveness::Gone,
            Err(_) => Liveness::Unknown,
            Ok(line) => match start_time(&line) {
                Some((started, state))
                    if started == process.start && !matches!(state, 'Z' | 'X') =>
                {
                    Liveness::Alive
                }
                Some(_) => Liveness::Gone,
                None => Liveness::Unknown,
            },
        }
    }
}

/// `<boot id>/<pid namespace>`, e.g. `0b5e…/pid:[4026531836]`; `None` off Linux.
fn process_table() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), ns.display()))
}

/// The start time (field 22) and state (field 3) of a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may contain anything, so fields are counted after
/// its last `)`.
fn start_time(line: &str) -> Option<(u64, char)> {
    let rest = &line[line.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3; field 22 is the 20th from there.
    let started = fields.nth(18)?.parse().ok()?;
    Some((started, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615";
        assert_eq!(start_time(stat), Some((987_654, 'S')));
        assert_eq!(start_time("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_alive_and_a_finished_one_is_gone() {
        let probe = LocalProcesses;
        let me = probe.current().expect("identifies itself on Linux");
        assert_eq!(me.pid, std::process::id());
        assert_eq!(probe.liveness(&me), Liveness::Alive);
        // A pid reused by a later process: another start time.
        let reused = HolderProcess {
            start: me.start + 1,
            ..me.clone()
        };
        assert_eq!(probe.liveness(&reused), Liveness::Gone);
        // A child that has exited and been reaped.
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("true runs");
        let pid = child.id();
        child.wait().expect("wait");
        let gone = HolderProcess { pid, ..me.clone() };
        assert_eq!(probe.liveness(&gone), Liveness::Gone);
        // Another process table: cannot tell.
        let elsewhere = HolderProcess {
            host: "another-boot/pid:[1]".into(),
            ..me
        };
        assert_eq!(probe.liveness(&elsewhere), Liveness::Unknown);
    }
}
