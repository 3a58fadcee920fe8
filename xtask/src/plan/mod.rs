//! `cargo xtask plan --rps N`: the settings to deploy Spillway with for a load, its monthly
//! bill by service, how long a burst takes to reach the table, and which limit binds first at
//! 1x, 10x and 100x the rate.
//!
//! The model is pure and tested natively (`model.rs`: the traffic; `settings.rs`,
//! `bill.rs`; `drain.rs`: the burst; `binding.rs`: the limits), over the one price table (`crate::prices`), the
//! documented limits (`crate::limits`) and the capacities measured here (`inputs.rs`, from the
//! bench's results file). This file only reads the file, assembles the model's input and
//! prints (`report.rs`); it deploys nothing and calls no cloud API.

mod bill;
mod binding;
mod drain;
mod inputs;
mod model;
mod options;
mod report;
mod settings;

use anyhow::{Context, Result};

use crate::step::root;
use bill::{bill, Bill};
use binding::{uses, Use};
use drain::{drain, Drain};
use inputs::{measured, Measured};
use model::{flow, pack, Capacities, Deployment, Input, Load, Settings};
use options::{parse, Options, USAGE};
use settings::settings;

/// The rate multiples whose binding limit the plan shows.
pub const MULTIPLES: [f64; 3] = [1.0, 10.0, 100.0];

/// Everything the command prints.
#[derive(Debug, Clone)]
pub struct Plan {
    pub options: Options,
    pub measured: Measured,
    pub input: Input,
    pub settings: Settings,
    pub bill: Bill,
    pub drain: Drain,
    /// The limits at each of [`MULTIPLES`], the most used first.
    pub limits: Vec<(f64, Vec<Use>)>,
}

/// The plan for `options`, with the bench's results file's text if there is one. The bench
/// can call this to set the planner's predictions beside what a run measured.
pub fn plan(options: &Options, results: Option<&str>) -> Plan {
    let o = options;
    let epr = f64::from(o.events_per_request);
    let load = Load {
        rps: o.rps,
        events_per_request: epr,
        bytes_per_event: f64::from(o.bytes_per_event),
        locations: f64::from(o.locations),
        burst_events: o.burst.unwrap_or(o.rps * epr * 60.0),
        arrivals: o.arrivals,
    };
    // The drain per connection depends on how many events a message carries, which depends
    // on the settings: plan with the direct request's messages, then once more with the
    // planned ones. Which of figure 10's connection counts: for this machine, its own (the
    // local workers share its two cores, as in the bench); for a deployment, one (each
    // Lambda invocation has its own CPU, so figure 10's rows with more connections than this
    // machine's cores measure the machine, not a connection).
    let rows_at = if o.here { o.connections } else { 1 };
    let mut m = measured(results, epr, epr, rows_at);
    let mut input = assemble(o, &load, &m);
    let direct = pack(epr, &load, &input.capacities);
    m = measured(results, epr, epr / direct.messages, rows_at);
    input = assemble(o, &load, &m);
    let first = settings(&input);
    let per_message = flow(&input, 1.0, first.window_ms, first.batch_shards).events_per_message();
    m = measured(results, epr, per_message, rows_at);
    input = assemble(o, &load, &m);
    let s = settings(&input);
    let limits = MULTIPLES
        .iter()
        .map(|&k| (k, uses(&input, &s, k)))
        .collect();
    Plan {
        options: o.clone(),
        bill: bill(&input, &s),
        drain: drain(&input, &s),
        measured: m,
        settings: s,
        input,
        limits,
    }
}

/// The plan for the arguments of `cargo xtask plan` (`args`, without `plan`), with a results
/// file's text: how the bench sets the planner's predictions beside what its run measured.
pub fn plan_for(args: &[String], results: Option<&str>) -> Result<Plan> {
    let options = parse(args).map_err(|e| anyhow::anyhow!("plan {}: {e}", args.join(" ")))?;
    Ok(plan(&options, results))
}

fn assemble(o: &Options, load: &Load, m: &Measured) -> Input {
    Input {
        load: load.clone(),
        deployment: Deployment {
            buffer: o.buffer,
            connections: o.connections,
            window_ms: f64::from(o.window_ms),
            send_ms: o.send_ms,
            isolates: o.isolates.map(f64::from),
            memory_mb: f64::from(o.memory_mb),
            edge_rps: if o.here {
                m.edge_rps.as_ref().map(|e| e.value)
            } else {
                None
            },
            ramp: !o.here,
        },
        capacities: Capacities {
            drain_per_connection: o.write_rate.unwrap_or(m.drain.value),
            batcher_rps: m.batcher_rps.value,
            cpu_ms_per_request: m.cpu_ms.value,
            message_overhead: m.message_overhead.value,
            event_overhead: m.event_overhead.value,
        },
    }
}

/// The command.
pub fn main(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    if args.iter().any(|a| a == "--sources") {
        print!("{}", report::sources());
        return Ok(());
    }
    let options = parse(args).map_err(|e| anyhow::anyhow!("{e}\n\n{USAGE}"))?;
    let path = options
        .results
        .clone()
        .unwrap_or_else(|| root().join("benches/results/results.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && options.results.is_none() => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let plan = plan(&options, text.as_deref());
    if options.brief {
        print!("{}", report::brief(&plan));
    } else {
        print!(
            "{}",
            report::render(&plan, text.is_some().then_some(path.as_path()))
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
