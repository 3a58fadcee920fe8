//! `cargo xtask down [--wait SECS] [--force]`: stops the local pipeline, but not with accepted
//! events still in what keeps them in memory only: the local SQS queue (visible and in flight)
//! and the edge's spill queue (spilled, not yet replayed). It waits for them to drain, with a
//! deadline and a progress line, and refuses at the deadline (or at once when nothing could
//! drain them: no poller and no supervisor), naming how many would be lost and how to force it.
//!
//! The local SQS does not keep its queue across a restart (moto keeps queues in memory only;
//! LocalStack's persistence is not part of its community edition), hence this check. A Kinesis
//! stream's backlog is not at risk: kinesis-local writes the stream to disk when stopped, and
//! the poller's checkpoints are kept beside it. Dead letters go with the local SQS too: `down`
//! says how many, and does not wait for them (nothing drains a DLQ by itself).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use spillway_support::stack::{recorded_services, wait_drained, DevEnv};
use spillway_support::{live_services, sweep};

use super::{records_dir, remove_settings, state_dir, supervisor};

/// How long `down` waits for the queues to drain unless `--wait` says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// How long the supervisor gets to stop the stack (the poller finishes its batch, up to 30 s).
const SUPERVISOR_STOP: Duration = Duration::from_secs(90);

#[derive(Debug, PartialEq, Eq)]
struct Options {
    wait: Duration,
    force: bool,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        wait: DEFAULT_WAIT,
        force: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--force" => o.force = true,
            "--wait" => {
                let v = it
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| anyhow::anyhow!("--wait takes a number of seconds"))?;
                o.wait = Duration::from_secs(v);
            }
            other => bail!("unknown option {other} (known: --wait SECS, --force)"),
        }
    }
    Ok(o)
}

pub fn down(args: &[String]) -> Result<()> {
    let opts = options(args)?;
    let dir = records_dir();
    let supervisor = supervisor::running();
    let live = live_services(&dir);
    if supervisor.is_none() && live == 0 {
        sweep(&dir, Duration::from_secs(1));
        remove_settings();
        supervisor::remove_pid_file();
        println!("Nothing is running.");
        return Ok(());
    }
    if !opts.force {
        let env = DevEnv::read(&state_dir().join("dev.env")).map_err(|e| {
            anyhow::anyhow!(
                "refusing to stop: what the queues hold cannot be read ({e:#}); `cargo xtask \
                 down --force` stops the pipeline anyway"
            )
        })?;
        let poller = recorded_services(&dir)
            .iter()
            .any(|(name, alive)| name == "poller" && *alive);
        wait_drained(
            &env,
            &state_dir(),
            opts.wait,
            supervisor.is_some() || poller,
            &mut |line| println!("{line}"),
        )?;
    }
    let t = Instant::now();
    if let Some(pid) = supervisor {
        // SIGINT: the supervisor (or `cargo xtask dev`) stops its stack in order, edge first.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let deadline = Instant::now() + SUPERVISOR_STOP;
        while supervisor::running().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Whatever is left (no supervisor, or one that did not finish): stopped by its records.
    sweep(&dir, Duration::from_secs(30));
    remove_settings();
    supervisor::remove_pid_file();
    println!(
        "Stopped {live} service(s){} ({:.1} s).",
        if supervisor.is_some() {
            " and their supervisor"
        } else {
            ""
        },
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_are_a_wait_and_force() {
        assert_eq!(
            options(&[]).expect("none"),
            Options {
                wait: DEFAULT_WAIT,
                force: false
            }
        );
        assert_eq!(
            options(&args(&["--wait", "5", "--force"])).expect("both"),
            Options {
                wait: Duration::from_secs(5),
                force: true
            }
        );
        assert!(options(&args(&["--wait", "soon"])).is_err());
        let err = options(&args(&["--now"])).expect_err("unknown");
        assert!(err.to_string().contains("--force"), "{err}");
    }
}
