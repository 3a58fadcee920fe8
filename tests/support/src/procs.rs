//! Which processes belong to a service, and stopping all of them.
//!
//! A service is started in its own process group, but its process tree is what holds its ports:
//! `wrangler dev` is node, which starts `workerd`, and a descendant may even leave the group.
//! So a service's *family* is every member of its group plus every descendant of a member, as
//! `/proc` shows them, and stopping it means waiting until none of them is left, not only the
//! leader. Deciding who belongs ([`family`]) is pure; reading `/proc` and signalling are the
//! thin part around it.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long to wait for processes to disappear after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// One line of the process table: the fields of `/proc/<pid>/stat` we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    /// `R`, `S`, `Z` (exited, not yet reaped), ...
    pub state: char,
    /// Start time in clock ticks since boot: with `pid`, identifies a process across PID reuse.
    pub start: u64,
}

impl Proc {
    /// Parses the content of `/proc/<pid>/stat`. The command name, in parentheses, may itself
    /// contain spaces and parentheses, so the fields are counted from the last `)`.
    pub fn parse(stat: &str) -> Option<Proc> {
        let (head, rest) = stat.rsplit_once(')')?;
        let pid = head.split_whitespace().next()?.parse().ok()?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Proc {
            pid,
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            pgid: fields.get(2)?.parse().ok()?,
            // Field 22 of stat(5); `fields` starts at field 3.
            start: fields.get(19)?.parse().ok()?,
        })
    }

    /// A zombie has released its memory, files and sockets: for anyone waiting on it, it is
    /// gone (only its parent can remove the entry, and that parent may be a slow init).
    fn running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }

    fn id(&self) -> (u32, u64) {
        (self.pid, self.start)
    }
}

/// The members of process group `pgid` in `table`, plus every descendant of a member or of an
/// already `known` process (pid, start time), transitively. Returned as (pid, start time).
pub(crate) fn family(
    table: &[Proc],
    pgid: u32,
    known: &BTreeSet<(u32, u64)>,
) -> BTreeSet<(u32, u64)> {
    let mut found: BTreeSet<(u32, u64)> = table
        .iter()
        .filter(|p| p.pgid == pgid || known.contains(&p.id()))
        .map(Proc::id)
        .collect();
    loop {
        let pids: BTreeSet<u32> = found.iter().map(|(pid, _)| *pid).collect();
        let before = found.len();
        found.extend(
            table
                .iter()
                .filter(|p| pids.contains(&p.ppid))
                .map(Proc::id),
        );
        if found.len() == before {
            return found;
        }
    }
}

/// The process table now. Processes that exit while it is read are simply missing.
pub(crate) fn table() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| Proc::parse(&s))
        .collect()
}

/// The processes of one service: its group, and everyone seen descending from it so far.
#[derive(Debug)]
pub(crate) struct Family {
    pgid: u32,
    seen: BTreeSet<(u32, u64)>,
}

impl Family {
    pub fn new(pgid: u32) -> Family {
        let mut f = Family {
            pgid,
            seen: BTreeSet::new(),
        };
        f.refresh(&table());
        f
    }

    /// Adds the members and descendants `table` shows now (a child started during shutdown, or
    /// one whose parent is about to exit and leave it to init).
    fn refresh(&mut self, table: &[Proc]) {
        self.seen = family(table, self.pgid, &self.seen);
    }

    /// The pids of the family still running in `table`.
    fn running(&self, table: &[Proc]) -> Vec<u32> {
        table
            .iter()
            .filter(|p| p.running() && self.seen.contains(&p.id()))
            .map(|p| p.pid)
            .collect()
    }

    /// Is any process of the family still running?
    pub fn alive(&mut self) -> bool {
        let t = table();
        self.refresh(&t);
        !self.running(&t).is_empty()
    }

    /// Sends `signal` to the group and to each running member of the family.
    fn signal(&mut self, signal: &str) {
        let t = table();
        self.refresh(&t);
        let mut args = vec![
            format!("-{signal}"),
            "--".to_owned(),
            format!("-{}", self.pgid),
        ];
        args.extend(self.running(&t).iter().map(u32::to_string));
        // Fails when some target is already gone; the others are signalled all the same.
        let _ = Command::new("kill")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The running processes of the family of group `pgid` whose command name (`/proc/<pid>/comm`)
/// is `comm`: how the supervisor tells that `wrangler dev` (node) still runs but its `workerd`
/// was killed, which leaves wrangler answering nothing useful.
pub(crate) fn family_members_named(pgid: u32, comm: &str) -> Vec<u32> {
    let t = table();
    let members = family(&t, pgid, &BTreeSet::new());
    t.iter()
        .filter(|p| p.running() && members.contains(&p.id()))
        .filter(|p| {
            fs::read_to_string(format!("/proc/{}/comm", p.pid)).is_ok_and(|c| c.trim() == comm)
        })
        .map(|p| p.pid)
        .collect()
}

/// Waits until no process of `families` runs, or `deadline`; true when none runs.
fn wait_gone(families: &mut [Family], deadline: Instant) -> bool {
    loop {
        let t = table();
        let mut any = false;
        for f in families.iter_mut() {
            f.refresh(&t);
            any |= !f.running(&t).is_empty();
        }
        if !any {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops every process of `families`: SIGTERM, then SIGKILL to whatever still runs after
/// `grace`, and waits until none runs. Returns false only if something survived SIGKILL for
/// [`KILL_WAIT`] (a process stuck in the kernel).
pub(crate) fn stop(families: &mut [Family], grace: Duration) -> bool {
    for f in families.iter_mut() {
        f.signal("TERM");
    }
    if wait_gone(families, Instant::now() + grace) {
        return true;
    }
    kill(families)
}

/// SIGKILL to every process of `families` (a crash, or the end of the grace period), then waits
/// until none runs; false only if something survived for [`KILL_WAIT`].
pub(crate) fn kill(families: &mut [Family]) -> bool {
    for f in families.iter_mut() {
        f.signal("KILL");
    }
    wait_gone(families, Instant::now() + KILL_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, pgid: u32) -> Proc {
        Proc {
            pid,
            ppid,
            pgid,
            state: 'S',
            start: u64::from(pid) * 10,
        }
    }

    #[test]
    fn parses_stat_with_an_awkward_command_name() {
        let stat = "4242 (we ird) (name)) S 17 4200 4200 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 30388 3133440 411";
        let proc = Proc::parse(stat).expect("parses");
        assert_eq!(
            proc,
            Proc {
                pid: 4242,
                ppid: 17,
                pgid: 4200,
                state: 'S',
                start: 30388
            }
        );
        assert_eq!(Proc::parse("12 (short) S 1"), None);
    }

    #[test]
    fn family_is_the_group_and_every_descendant() {
        let table = [
            p(1, 0, 1),
            p(100, 1, 100), // the service's leader (wrangler)
            p(101, 100, 100),
            p(102, 101, 102), // left the group (setsid), still a descendant
            p(103, 102, 102),
            p(200, 1, 200), // another service
            p(201, 200, 200),
        ];
        let got = family(&table, 100, &BTreeSet::new());
        let pids: Vec<u32> = got.iter().map(|(pid, _)| *pid).collect();
        assert_eq!(pids, [100, 101, 102, 103]);
    }

    #[test]
    fn an_orphan_already_known_stays_in_the_family() {
        // The leader exited and its child, outside the group, now hangs from init.
        let known = BTreeSet::from([(102, 1020)]);
        let table = [p(1, 0, 1), p(102, 1, 102), p(103, 102, 102)];
        let got = family(&table, 100, &known);
        assert_eq!(got, BTreeSet::from([(102, 1020), (103, 1030)]));
    }

    #[test]
    fn a_reused_pid_is_not_the_same_process() {
        let known = BTreeSet::from([(102, 1)]);
        let table = [p(102, 1, 102)]; // pid 102 again, but started later
        assert!(family(&table, 100, &known).is_empty());
    }
}
