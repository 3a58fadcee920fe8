//! Whether stopping the local pipeline now would lose accepted events, and waiting until it
//! would not: what `cargo xtask down` checks first. At risk is what is kept in memory only:
//! the local SQS queue (visible and in flight; moto keeps queues in memory, and LocalStack's
//! persistence is not in its community edition) and the edge's spill queue (spilled, not yet
//! replayed; Miniflare's). A Kinesis stream's backlog is not: kinesis-local writes the stream to
//! disk when stopped, and the poller's checkpoints are kept beside it. Dead letters go with the
//! local SQS too; they are named, not waited for (nothing drains a DLQ by itself).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{read_status, BufferKind, DevEnv, Status};

/// What stopping now would lose, in words, or `None` when nothing would be: the status's
/// queued messages and spilled events not yet replayed, or, when the local SQS does not
/// answer, that its content cannot be counted.
pub fn at_risk(s: &Status, buffer: BufferKind) -> Option<String> {
    let (queued, spill) = s.at_risk();
    let mut parts = Vec::new();
    if s.queue_unread && buffer == BufferKind::Sqs {
        parts.push(format!(
            "whatever the local queue holds (it cannot be counted: {})",
            s.problems.join(", ")
        ));
    } else if queued > 0 {
        parts.push(format!(
            "{queued} queued message(s) ({} visible, {} in flight; each holds one event or more)",
            s.visible, s.in_flight
        ));
    }
    if spill > 0 {
        parts.push(format!(
            "{spill} spilled event(s) not yet replayed onto the buffer"
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// Waits until nothing is at risk, or refuses. `drainable`: something runs that drains the
/// queues (a supervisor, or a poller).
pub fn wait_drained(
    env: &DevEnv,
    dir: &Path,
    wait: Duration,
    drainable: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let deadline = Instant::now() + wait;
    let mut last_line: Option<Instant> = None;
    loop {
        let s = read_status(env, dir)?;
        let Some(what) = at_risk(&s, env.buffer) else {
            if last_line.is_some() {
                progress("  drained.");
            }
            if s.dlq > 0 {
                progress(&format!(
                    "note: the DLQ's {} message(s) (records that can never be stored) go with the \
                     local SQS; `spillway-dlq` lists them",
                    s.dlq
                ));
            }
            return Ok(());
        };
        let why = if !drainable {
            Some("nothing drains them: neither a supervisor nor a poller runs")
        } else if Instant::now() >= deadline {
            Some("they did not drain in time")
        } else {
            None
        };
        if let Some(why) = why {
            bail!(
                "refusing to stop: {what} would be lost ({why}; the local SQS and the edge's \
                 spill queue keep them in memory only). Wait until `cargo xtask status` shows the \
                 queue at 0 and replayed equal to spilled (or `cargo xtask down --wait SECS`), or \
                 stop anyway, losing them, with `cargo xtask down --force`."
            );
        }
        if last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
            progress(&format!(
                "  waiting for the queues to drain ({} s left): {what}",
                deadline.saturating_duration_since(Instant::now()).as_secs()
            ));
            last_line = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_would_be_lost_is_named_with_its_count() {
        let idle = Status::default();
        assert_eq!(at_risk(&idle, BufferKind::Sqs), None);
        let busy = Status {
            visible: 7,
            in_flight: 3,
            spilled: 12,
            replayed: 2,
            ..Status::default()
        };
        assert_eq!(
            at_risk(&busy, BufferKind::Sqs).as_deref(),
            Some(
                "10 queued message(s) (7 visible, 3 in flight; each holds one event or more) \
                 and 10 spilled event(s) not yet replayed onto the buffer"
            )
        );
        let gone = Status {
            queue_unread: true,
            problems: vec!["SQS unreachable".into()],
            ..Status::default()
        };
        assert_eq!(
            at_risk(&gone, BufferKind::Sqs).as_deref(),
            Some("whatever the local queue holds (it cannot be counted: SQS unreachable)")
        );
        // With Kinesis the local SQS holds no main queue.
        assert_eq!(at_risk(&gone, BufferKind::Kinesis), None);
    }
}
