//! Where the CPU went during a timed run: the machine's busy time (`/proc/stat`) and each
//! process's user + system time (`/proc/<pid>/stat`), read before and after, grouped by what the
//! process is (workerd, wrangler's node, the local buffer (SQS or Kinesis), the load generator, everything else).
//! Only the bench's own processes count (this process and its descendants: the `Stack` it
//! started): on a machine shared with other work, another `wrangler dev` or local SQS must not
//! be billed to this run's requests. The machine's busy cores are the machine's, whoever used them.
//! The load generator is a child that has exited by the end: it counts through this process's
//! reaped children's time (`/proc/self/stat`), so nothing else may be reaped during a run.
//! The parsing and the grouping are pure and tested; reading `/proc` is the thin part.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;

/// The groups a process is counted in, in the order the report shows them.
pub(super) const GROUPS: [&str; 5] = ["workerd", "wrangler (node)", "local buffer", "wrk", "other"];

/// CPU time so far, in clock ticks.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Snapshot {
    /// Per process (pid, start time): its group and its user + system ticks.
    procs: BTreeMap<(u32, u64), (&'static str, u64)>,
    /// Per process (pid, start time): its parent's pid, to tell the bench's processes apart.
    parents: BTreeMap<(u32, u64), u32>,
    /// Whose processes count: this pid and its descendants (`None`: every process).
    root: Option<u32>,
    /// The machine: ticks not idle (or waiting for I/O), and all ticks, over every core.
    busy: u64,
    total: u64,
    /// This process's waited-for children (`cutime + cstime`): the load generator, which has
    /// exited and been reaped by the time the run ends, so it is not in `procs` any more.
    children: u64,
}

/// What a run used between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Usage {
    /// CPU seconds per group, in [`GROUPS`] order.
    pub(super) seconds: Vec<(&'static str, f64)>,
    /// The machine's cores busy on average (0 ..= cores).
    pub(super) cores_busy: f64,
}

impl Usage {
    pub(super) fn seconds_of(&self, group: &str) -> f64 {
        self.seconds
            .iter()
            .find(|(g, _)| *g == group)
            .map_or(0.0, |(_, s)| *s)
    }
}

/// The group of a process, from its command name (`comm`) and command line.
pub(super) fn group(comm: &str, cmdline: &str) -> &'static str {
    if comm == "workerd" {
        "workerd"
    } else if comm == "wrk" {
        "wrk"
    } else if cmdline.contains("localstack")
        || cmdline.contains("moto_server")
        || cmdline.contains("kinesis-local")
    {
        "local buffer"
    } else if comm.starts_with("node") && cmdline.contains("wrangler") {
        "wrangler (node)"
    } else {
        "other"
    }
}

/// Numeric field `n` of stat(5) in the text of a `/proc/<pid>/stat`, counted after the command
/// name (which may itself hold spaces and parentheses): `(field(s, 14), field(s, 15))` are
/// (utime, stime).
fn field(stat: &str, n: usize) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcStat {
    pub(super) pid: u32,
    pub(super) ppid: u32,
    pub(super) comm: String,
    /// User + system clock ticks.
    pub(super) ticks: u64,
    /// Start time, in ticks since boot: with `pid`, a process across pid reuse.
    pub(super) start: u64,
}

/// A process from the text of `/proc/<pid>/stat`.
pub(super) fn parse_proc(stat: &str) -> Option<ProcStat> {
    let (head, _) = stat.rsplit_once(')')?;
    let (pid, comm) = head.split_once(" (")?;
    Some(ProcStat {
        pid: pid.trim().parse().ok()?,
        ppid: u32::try_from(field(stat, 4)?).ok()?,
        comm: comm.to_owned(),
        ticks: field(stat, 14)? + field(stat, 15)?,
        start: field(stat, 22)?,
    })
}

/// The processes of `parents` ((pid, start) -> parent pid) that are `root` or descend from it,
/// as one snapshot shows them (a process reparented to init after its parent exited is lost:
/// the bench's services are children it waits for, so theirs are not).
pub(super) fn descendants(parents: &BTreeMap<(u32, u64), u32>, root: u32) -> BTreeSet<(u32, u64)> {
    let mut mine: BTreeSet<u32> = BTreeSet::from([root]);
    // Fixed point: a process whose parent is in the set joins it (at most depth passes).
    loop {
        let before = mine.len();
        for ((pid, _), ppid) in parents {
            if mine.contains(ppid) {
                mine.insert(*pid);
            }
        }
        if mine.len() == before {
            break;
        }
    }
    parents
        .keys()
        .filter(|(pid, _)| mine.contains(pid))
        .copied()
        .collect()
}

/// `cutime + cstime` (the reaped children's ticks) from the text of `/proc/self/stat`.
pub(super) fn parse_children(stat: &str) -> Option<u64> {
    Some(field(stat, 16)? + field(stat, 17)?)
}

/// `(busy, total)` ticks from the `cpu` line of `/proc/stat` (idle and iowait are not busy).
pub(super) fn parse_machine(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user].
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Reads every process and the machine now. Processes that vanish while being read are skipped.
pub(super) fn snapshot() -> Snapshot {
    let mut s = Snapshot {
        root: Some(std::process::id()),
        ..Snapshot::default()
    };
    if let Some((busy, total)) = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_machine(&t))
    {
        s.busy = busy;
        s.total = total;
    }
    s.children = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| parse_children(&t))
        .unwrap_or(0);
    let Ok(dir) = fs::read_dir("/proc") else {
        return s;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let Some(stat) = fs::read_to_string(path.join("stat")).ok() else {
            continue;
        };
        let Some(p) = parse_proc(&stat) else {
            continue;
        };
        let cmdline = fs::read(path.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        s.procs
            .insert((p.pid, p.start), (group(&p.comm, &cmdline), p.ticks));
        s.parents.insert((p.pid, p.start), p.ppid);
    }
    s
}

/// What happened between `before` and `after` in the processes of `after`'s root (the bench:
/// itself and its descendants, as `after` shows them): a process counts for the ticks it gained
/// (a new one for all of its ticks; one that exited meanwhile is not seen, hence "at least").
pub(super) fn usage(before: &Snapshot, after: &Snapshot, ticks_per_s: f64, cores: usize) -> Usage {
    let mine = after.root.map(|root| descendants(&after.parents, root));
    let counted = |id: &(u32, u64)| mine.as_ref().is_none_or(|m| m.contains(id));
    let mut per: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (id, (g, ticks)) in after.procs.iter().filter(|(id, _)| counted(id)) {
        let was = before.procs.get(id).map_or(0, |(_, t)| *t);
        *per.entry(g).or_insert(0) += ticks.saturating_sub(was);
    }
    *per.entry("wrk").or_insert(0) += after.children.saturating_sub(before.children);
    let seconds = GROUPS
        .iter()
        .map(|g| (*g, per.get(g).copied().unwrap_or(0) as f64 / ticks_per_s))
        .collect();
    let total = after.total.saturating_sub(before.total);
    let cores_busy = if total == 0 {
        0.0
    } else {
        after.busy.saturating_sub(before.busy) as f64 / total as f64 * cores as f64
    };
    Usage {
        seconds,
        cores_busy,
    }
}

/// The machine's cores (`available_parallelism`, 1 when it cannot be read).
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be asked).
pub(super) fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (work erd) S 1 4242 4242 0 -1 4194560 9 0 0 0 \
                        150 30 0 0 20 0 12 0 777 1000 50 18446744073709551615";

    #[test]
    fn a_process_line_gives_its_cpu_ticks_even_with_spaces_in_the_name() {
        let p = parse_proc(STAT).expect("parses");
        assert_eq!(
            (p.pid, p.ppid, p.comm.as_str(), p.ticks, p.start),
            (4242, 1, "work erd", 180, 777)
        );
        assert_eq!(parse_proc("4242 (x) S 1"), None);
        assert_eq!(parse_children(STAT), Some(0));
        let reaped = STAT.replace("150 30 0 0 20", "150 30 7 5 20");
        assert_eq!(parse_children(&reaped), Some(12));
    }

    #[test]
    fn the_machine_line_counts_idle_and_iowait_as_not_busy() {
        let text = "cpu  100 5 45 800 50 0 0 0 0 0\ncpu0 50 2 20 400 25 0 0 0 0 0\n";
        assert_eq!(parse_machine(text), Some((150, 1000)));
        assert_eq!(parse_machine("intr 1 2 3"), None);
    }

    #[test]
    fn processes_are_grouped_by_what_they_are() {
        assert_eq!(group("workerd", "/x/workerd serve"), "workerd");
        assert_eq!(
            group("node", "node /x/node_modules/.bin/wrangler dev"),
            "wrangler (node)"
        );
        assert_eq!(
            group(
                "python3.13",
                "/x/.venv-localstack/bin/python -m localstack.runtime.main"
            ),
            "local buffer"
        );
        assert_eq!(
            group("moto_server", "/x/.venv/bin/moto_server -p 1"),
            "local buffer"
        );
        // kinesis-local is a node program too: its command line decides, not `comm`.
        assert_eq!(
            group("node", "node /x/node_modules/kinesis-local/main.js"),
            "local buffer"
        );
        assert_eq!(group("wrk", "wrk -t1"), "wrk");
        assert_eq!(group("postgres", "postgres -D x"), "other");
    }

    #[test]
    fn usage_counts_what_each_group_gained_and_the_cores_busy() {
        let mut before = Snapshot {
            busy: 1000,
            total: 4000,
            ..Snapshot::default()
        };
        before.procs.insert((1, 10), ("workerd", 500));
        before.procs.insert((2, 20), ("local buffer", 100));
        let mut after = Snapshot {
            busy: 2500,
            total: 6000,
            children: 25,
            ..Snapshot::default()
        };
        after.procs.insert((1, 10), ("workerd", 1100));
        after.procs.insert((2, 20), ("local buffer", 300));
        // A new process counts for all of its ticks; a reused pid with another start time
        // is another process.
        after.procs.insert((3, 30), ("wrk", 50));
        let u = usage(&before, &after, 100.0, 2);
        assert_eq!(u.seconds_of("workerd"), 6.0);
        assert_eq!(u.seconds_of("local buffer"), 2.0);
        // wrk, gone by the end, counts through this process's reaped children.
        assert_eq!(u.seconds_of("wrk"), 0.75);
        assert_eq!(u.seconds_of("other"), 0.0);
        assert_eq!(u.cores_busy, 1.5);
    }

    #[test]
    fn only_the_bench_and_its_descendants_count() {
        let mut before = Snapshot::default();
        before.procs.insert((10, 1), ("other", 0));
        before.procs.insert((11, 2), ("wrangler (node)", 100));
        before.procs.insert((12, 3), ("workerd", 100));
        before.procs.insert((50, 4), ("workerd", 100));
        let mut after = Snapshot {
            root: Some(10),
            ..Snapshot::default()
        };
        // The bench (10) started wrangler (11), which started workerd (12); 50 is another
        // run's workerd on the same machine, 13 a new grandchild.
        for (id, g, ticks, parent) in [
            ((10, 1), "other", 0, 1),
            ((11, 2), "wrangler (node)", 150, 10),
            ((12, 3), "workerd", 300, 11),
            ((13, 5), "workerd", 40, 12),
            ((50, 4), "workerd", 900, 1),
        ] {
            after.procs.insert(id, (g, ticks));
            after.parents.insert(id, parent);
        }
        assert_eq!(
            descendants(&after.parents, 10),
            BTreeSet::from([(10, 1), (11, 2), (12, 3), (13, 5)])
        );
        let u = usage(&before, &after, 100.0, 2);
        assert_eq!(
            u.seconds_of("workerd"),
            2.4,
            "200 + 40 ticks, not the other run's 800"
        );
        assert_eq!(u.seconds_of("wrangler (node)"), 0.5);
        after.root = None;
        assert_eq!(usage(&before, &after, 100.0, 2).seconds_of("workerd"), 10.4);
    }
}
