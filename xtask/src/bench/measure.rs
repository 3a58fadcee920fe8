//! The machine a run is measured on: what it is, its load, and the time.

use std::fs;
use std::process::Command;

use crate::step::{output, root};

#[derive(Debug, Default, Clone)]
pub(super) struct Machine {
    pub(super) nproc: usize,
    pub(super) cpu: String,
    pub(super) ram_gib: f64,
    pub(super) kernel: String,
    pub(super) load: String,
    pub(super) date: String,
    pub(super) commit: String,
}

impl Machine {
    pub(super) fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        // The commit checked out, marked when tracked files differ from it.
        let dirty = "--dirty= + uncommitted changes";
        let describe = ["describe", "--always", "--exclude=*", dirty];
        let commit = output(Command::new("git").current_dir(root()).args(describe));
        Machine {
            nproc: output(&mut Command::new("nproc"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            cpu,
            ram_gib: ram_kib / 1024.0 / 1024.0,
            kernel: output(Command::new("uname").args(["-sr"])).unwrap_or_default(),
            load: load_average(),
            date: output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
                .unwrap_or_default(),
            commit: commit.unwrap_or_default(),
        }
    }
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg prints them.
pub(super) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Now, as the timestamp the live runs stamp their events with (whole seconds, like the
/// generator's fixed one).
pub(super) fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .format("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string()
}
