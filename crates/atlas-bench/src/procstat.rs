//! CPU time and peak memory of a process, read from `/proc` (no `unsafe`, no libc).
//!
//! The simulator runs in a child process so its share can be read separately from
//! Atlas's: both are measured the same way, by pid.

use std::time::Duration;

use crate::error::BenchError;

/// `USER_HZ`: the unit of `utime`/`stime` in `/proc/<pid>/stat`. The kernel fixes it at
/// 100 for user space on every architecture Linux ships today (it is part of the ABI).
const TICKS_PER_SEC: u64 = 100;

/// A process to measure: `self` or a child's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// The benchmark process itself (Atlas's code runs here).
    Own,
    /// Another process (the simulator child).
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Self::Own => "/proc/self".to_owned(),
            Self::Other(p) => format!("/proc/{p}"),
        }
    }

    /// User + system CPU time consumed so far, all threads included.
    pub fn cpu(self) -> Result<Duration, BenchError> {
        let path = format!("{}/stat", self.dir());
        let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(&path, e))?;
        parse_cpu(&text).ok_or_else(|| BenchError::Proc(format!("unexpected format of {path}")))
    }

    /// Peak resident set size (`VmHWM`) in bytes since start or the last [`Pid::reset_peak`].
    pub fn peak_rss(self) -> Result<u64, BenchError> {
        self.status_bytes("VmHWM:")
    }

    /// Current resident set size (`VmRSS`) in bytes: the floor a step's peak starts from
    /// (memory the allocator kept from earlier steps stays resident).
    pub fn rss(self) -> Result<u64, BenchError> {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(self, field: &str) -> Result<u64, BenchError> {
        let path = format!("{}/status", self.dir());
        let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(&path, e))?;
        parse_status_kib(&text, field)
            .ok_or_else(|| BenchError::Proc(format!("no {field} in {path}")))
    }

    /// Resets `VmHWM` to the current RSS (writing `5` to `clear_refs`, Linux ≥ 4.0), so
    /// each scenario reports its own peak rather than the process's lifetime peak.
    pub fn reset_peak(self) -> Result<(), BenchError> {
        let path = format!("{}/clear_refs", self.dir());
        std::fs::write(&path, "5").map_err(|e| BenchError::io(&path, e))
    }
}

/// `utime + stime` from a `/proc/<pid>/stat` line. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SEC))
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A CPU reading of Atlas's process and (when there is one) the simulator's, to subtract.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    own: Duration,
    sim: Option<Duration>,
}

impl CpuMark {
    /// Reads both processes now.
    pub fn now(sim: Option<u32>) -> Result<Self, BenchError> {
        Ok(Self {
            own: Pid::Own.cpu()?,
            sim: sim.map(|p| Pid::Other(p).cpu()).transpose()?,
        })
    }

    /// CPU used since `self` by Atlas's process and by the simulator.
    pub fn since(&self, sim: Option<u32>) -> Result<(Duration, Option<Duration>), BenchError> {
        let later = Self::now(sim)?;
        Ok((
            later.own.saturating_sub(self.own),
            match (later.sim, self.sim) {
                (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                _ => None,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_counts_fields_after_the_last_parenthesis() {
        let stat = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_cpu(stat), Some(Duration::from_secs(3)));
        assert_eq!(parse_cpu("garbage"), None);
    }

    #[test]
    fn hwm_is_read_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t 9999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1000 * 1024));
        assert_eq!(parse_status_kib("Name:\tx\n", "VmHWM:"), None);
    }

    #[test]
    fn own_process_is_readable_and_its_peak_resettable() {
        let cpu = Pid::Own.cpu().expect("own stat");
        // Touch 96 MiB, then free it (large blocks go back to the OS): the peak includes it
        // until reset, and not after.
        let big = vec![1u8; 96 << 20];
        std::hint::black_box(&big);
        drop(big);
        let peak = Pid::Own.peak_rss().expect("own status");
        assert!(peak >= 96 << 20, "peak {peak}");
        Pid::Own.reset_peak().expect("clear_refs");
        let after = Pid::Own.peak_rss().expect("own status");
        assert!(after + (48 << 20) < peak, "peak {peak} after reset {after}");
        assert!(Pid::Own.rss().expect("own status") > 0);
        assert!(Pid::Own.cpu().expect("own stat") >= cpu);
    }
}
