//! The plan as text: what was assumed and measured, the settings with why, the bill, the
//! burst, the limits. Formatting only: every number comes from the model.

use std::fmt::Write as _;
use std::path::Path;

use super::binding::{binding, n, outage};
use super::model::{flow, pack, Buffer, BATCHER_SHARE, MAX_SHARDS_ROOM};
use super::settings::batch_shards;
use super::Plan;
use crate::limits::LIMITS;
use crate::prices::PRICES;

/// The whole report, ending in a newline.
pub fn render(p: &Plan, results: Option<&Path>) -> String {
    let mut out = String::new();
    let _ = write_report(&mut out, p, results);
    out
}

fn write_report(out: &mut String, p: &Plan, results: Option<&Path>) -> std::fmt::Result {
    let (o, load, d, s) = (&p.options, &p.input.load, &p.input.deployment, &p.settings);
    let c = &p.input.capacities;
    let f = flow(&p.input, 1.0, s.window_ms, s.batch_shards);
    writeln!(
        out,
        "Spillway plan: {} requests/s of {} event(s) of {} B, over {} location(s), buffer {}{}",
        n(load.rps),
        o.events_per_request,
        o.bytes_per_event,
        o.locations,
        d.buffer.label(),
        if o.here {
            " (this machine's set-up)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  {} events/s, {} million events a month; arrivals {:?}",
        n(f.events),
        n(p.bill.events / 1e6),
        load.arrivals
    )?;

    writeln!(out, "\nInputs")?;
    match (results, &p.measured.run) {
        (Some(path), Some(run)) => writeln!(out, "  from {} (run {run})", path.display())?,
        (Some(path), None) => writeln!(out, "  from {}", path.display())?,
        (None, _) => writeln!(out, "  no results file: documented defaults, labelled")?,
    }
    let m = &p.measured;
    let drain_from = if o.write_rate.is_some() {
        "--write-rate".to_owned()
    } else {
        m.drain.from.clone()
    };
    let rows = [
        (
            "drain per connection",
            format!("{} events/s", n(c.drain_per_connection)),
            drain_from,
        ),
        (
            "Workers CPU per request",
            format!("{} ms", n(c.cpu_ms_per_request)),
            m.cpu_ms.from.clone(),
        ),
        (
            "one batcher's capacity",
            format!("{} req/s", n(c.batcher_rps)),
            m.batcher_rps.from.clone(),
        ),
        (
            "bytes the edge adds",
            format!(
                "{} a message, {} an event",
                n(c.message_overhead),
                n(c.event_overhead)
            ),
            m.message_overhead.from.clone(),
        ),
    ];
    for (what, value, from) in rows {
        writeln!(out, "  {what:<26} {value:<28} {from}")?;
    }
    if let Some(edge) = d.edge_rps {
        let from = m.edge_rps.as_ref().map_or("", |e| e.from.as_str());
        writeln!(
            out,
            "  {:<26} {:<28} {from}",
            "the edge's ceiling",
            format!("{} req/s", n(edge))
        )?;
    } else if o.here {
        writeln!(
            out,
            "  the edge's ceiling: not in the results file (figure 3); taken as unbounded"
        )?;
    }
    if let Some(local) = m.local_batching_rps {
        writeln!(
            out,
            "  (the local edge with group commit kept up with {} req/s in figure 7, bounded by \
             wrangler dev on this machine's cores, not by the batcher)",
            n(local)
        )?;
    }
    writeln!(
        out,
        "  assumed: a batcher's call to the buffer takes {} ms; traffic even across locations",
        n(d.send_ms)
    )?;

    writeln!(out, "\nSettings")?;
    let per_location = load.rps / load.locations;
    let one = pack(load.events_per_request, load, c);
    if s.group_commit {
        writeln!(
            out,
            "  {:<32} {:<8} group commit pays: {} requests per flush at {} req/s per batcher \
             (it pays from about 1.6, with the batcher's duration on top)",
            "BATCH_WINDOW_MS",
            n(s.window_ms),
            n(f.per_flush),
            n(f.per_batcher)
        )?;
    } else if one.bytes >= 64.0 * 1024.0 {
        writeln!(
            out,
            "  {:<32} {:<8} group commit off: a request of {} B fills a billed 64 KiB chunk alone",
            "BATCH_WINDOW_MS",
            0,
            n(one.bytes)
        )?;
    } else {
        let on = flow(&p.input, 1.0, d.window_ms, batch_shards(&p.input));
        writeln!(
            out,
            "  {:<32} {:<8} group commit off: at {} requests per flush ({} req/s per batcher, \
             a {} ms window) it saves less on the buffer than its Durable Object requests and \
             duration cost",
            "BATCH_WINDOW_MS",
            0,
            n(on.per_flush),
            n(on.per_batcher),
            n(d.window_ms)
        )?;
    }
    if !s.group_commit {
        writeln!(
            out,
            "  {:<32} {:<8} (the default; unused: group commit off)",
            "BATCH_SHARDS", s.min_shards
        )?;
        writeln!(
            out,
            "  {:<32} {:<8} (the default; unused: group commit off)",
            "BATCH_MAX_SHARDS", s.max_shards
        )?;
    } else {
        let target = c.batcher_rps * BATCHER_SHARE;
        writeln!(
            out,
            "  {:<32} {:<8} a floor: the edge adds batchers as a location's rate grows, keeping \
             each at or below {} req/s ({}% of its capacity), and drops them as it falls",
            "BATCH_SHARDS",
            s.min_shards,
            n(target),
            n(BATCHER_SHARE * 100.0)
        )?;
        writeln!(
            out,
            "  {:<32} {:<8} the most per location, {} req/s there (the default, or more to leave \
             room for {}x this rate)",
            "BATCH_MAX_SHARDS",
            s.max_shards,
            n(f64::from(s.max_shards) * target),
            n(MAX_SHARDS_ROOM)
        )?;
        writeln!(
            out,
            "  {:<32} {:<8} at {} req/s per location the edge runs {} batcher(s) there, {} req/s each",
            "(what the edge will do)",
            "",
            n(per_location),
            s.batch_shards,
            n(f.per_batcher)
        )?;
    }
    let conc = s.consumer_concurrency(d.buffer);
    let capacity = conc * c.drain_per_connection;
    match d.buffer {
        Buffer::Sqs => writeln!(
            out,
            "  {:<32} {:<8} the connection budget: drains {} events/s at most ({}x the rate)",
            "MaximumConcurrency",
            s.concurrency,
            n(capacity),
            n(capacity / f.events)
        )?,
        _ => {
            writeln!(
                out,
                "  {:<32} {:<8} the connection budget (the function's reserved concurrency)",
                "ConnectionBudget", s.concurrency
            )?;
            if d.buffer == Buffer::KinesisProvisioned {
                writeln!(
                    out,
                    "  {:<32} {:<8} {} records/s, {} MiB/s in, with 25 % headroom",
                    "StreamMode=PROVISIONED ShardCount",
                    s.stream_shards,
                    n(f.messages),
                    n(f.messages * f.message_bytes / 1_048_576.0)
                )?;
            } else {
                writeln!(
                    out,
                    "  {:<32} {:<8} shards on-demand keeps for this rate (twice the peak, at least 4)",
                    "StreamMode=ON_DEMAND", s.stream_shards
                )?;
            }
            writeln!(
                out,
                "  {:<32} {:<8} shards x factor = {} concurrent, capped by the budget: drains {} events/s at most ({}x the rate)",
                "ParallelizationFactor",
                s.parallelization,
                s.stream_shards * s.parallelization,
                n(capacity),
                n(capacity / f.events)
            )?;
        }
    }
    writeln!(
        out,
        "  {:<32} {:<8} {} event(s) per {}: about {} rows per transaction",
        "BatchSize",
        s.batch_size,
        n(f.events_per_message()),
        if d.buffer.is_kinesis() {
            "record"
        } else {
            "message"
        },
        n(f64::from(s.batch_size) * f.events_per_message())
    )?;
    writeln!(
        out,
        "  {:<32} {:<8} (required above 10 SQS messages per batch)",
        "MaximumBatchingWindowInSeconds", s.batching_window_s
    )?;

    writeln!(
        out,
        "\nMonthly bill (us-east-1 list prices of xtask/src/prices.rs; free tiers ignored)"
    )?;
    for l in &p.bill.lines {
        writeln!(
            out,
            "  {:<16} {:<40} {:>24} {:>12}",
            l.service,
            l.item,
            format!("{} {}", n(l.units), l.unit),
            format!("${}", n(l.usd))
        )?;
    }
    let fixed: f64 = p.bill.lines.iter().filter(|l| l.fixed).map(|l| l.usd).sum();
    writeln!(
        out,
        "  {:<16} {:<40} {:>24} {:>12}",
        "total",
        "",
        "",
        format!("${}", n(p.bill.total()))
    )?;
    writeln!(
        out,
        "  per million events: ${}{}",
        n(p.bill.per_million_events()),
        if fixed > 0.0 {
            format!(", plus ${} a month whatever the traffic", n(fixed))
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "  not counted: the spill queue (paid only through an SQS outage), Workers' $5 monthly \
         minimum, CloudWatch, the SQS mapping's idle long polls (cents a month)"
    )?;

    let dr = &p.drain;
    writeln!(
        out,
        "\nBurst of {} events on top of the rate",
        n(load.burst_events)
    )?;
    match dr.seconds {
        Some(t) => writeln!(
            out,
            "  in the table after {} s (bound: {}); {}",
            n(t),
            dr.bound,
            match (d.edge_rps, d.buffer, dr.accept_seconds) {
                (None, Buffer::Sqs | Buffer::KinesisOnDemand, _) =>
                    "the edge takes it in at once (Workers scale with the traffic)".to_owned(),
                (_, _, Some(a)) => format!("the edge took it in after {} s", n(a)),
                _ => String::new(),
            }
        )?,
        None => writeln!(
            out,
            "  never drains: {} has no capacity left over the rate (or needs more than 30 days)",
            dr.bound
        )?,
    }
    if d.buffer == Buffer::KinesisProvisioned && dr.accept_seconds.is_some_and(|a| a > 1.0) {
        writeln!(
            out,
            "  past its shards' rate a provisioned stream refuses records; the edge retries them \
             within SQS_DEADLINE_MS, then spills them (or answers 503): a burst that takes \
             longer than that to take in is partly spilled"
        )?;
    }
    writeln!(
        out,
        "  the consumer: {} concurrent at first, {} at most, draining {} events/s",
        n(dr.concurrency_start),
        n(dr.concurrency_max),
        n(dr.capacity)
    )?;

    writeln!(
        out,
        "\nLimits, with the settings above (share of each used; 100 % binds)"
    )?;
    for (k, list) in &p.limits {
        let head = match binding(list) {
            Some(u) => format!("binds first: {}", u.limit),
            None => "nothing binds".to_owned(),
        };
        writeln!(out, "  at {}x ({} req/s): {head}", n(*k), n(load.rps * k))?;
        for u in list
            .iter()
            .filter(|u| !u.outage)
            .take(3)
            .chain(outage(list))
        {
            writeln!(
                out,
                "    {:>9}  {}: {}",
                format!("{}%", n(u.share * 100.0)),
                u.limit,
                u.detail
            )?;
        }
    }
    Ok(())
}

/// The documented limits and the prices the model uses, each with its source and when it was
/// read.
pub fn sources() -> String {
    let mut out = String::from("Documented limits (xtask/src/limits.rs)\n");
    for l in LIMITS {
        out += &format!(
            "  {}: {} = {} ({})\n    source: {} (read {})\n",
            l.service,
            l.what,
            n(l.value),
            l.kind,
            l.source,
            l.read
        );
    }
    out += "\nPrices (xtask/src/prices.rs; us-east-1 where regional)\n";
    for p in PRICES {
        out += &format!(
            "  {}: ${} {} (free: {})\n    source: {} (read {})\n",
            p.service, p.usd, p.unit, p.free, p.source, p.read
        );
    }
    out
}

/// The plan in a few lines: the settings, the bill by service, the burst, the binding limits.
pub fn brief(p: &Plan) -> String {
    let mut out = String::new();
    let _ = write_brief(&mut out, p);
    out
}

fn write_brief(out: &mut String, p: &Plan) -> std::fmt::Result {
    let (o, d, s) = (&p.options, &p.input.deployment, &p.settings);
    writeln!(
        out,
        "{} req/s x {} event(s) of {} B, {} location(s), {}, {} connection(s) of {} events/s",
        n(o.rps),
        o.events_per_request,
        o.bytes_per_event,
        o.locations,
        d.buffer.label(),
        o.connections,
        n(p.input.capacities.drain_per_connection)
    )?;
    let consumer = match d.buffer {
        Buffer::Sqs => format!("MaximumConcurrency={}", s.concurrency),
        _ => format!(
            "ConnectionBudget={} shards={} ParallelizationFactor={}",
            s.concurrency, s.stream_shards, s.parallelization
        ),
    };
    writeln!(
        out,
        "  settings: BATCH_WINDOW_MS={} BATCH_SHARDS={} BATCH_MAX_SHARDS={}{} {consumer} BatchSize={}",
        n(s.window_ms),
        s.min_shards,
        s.max_shards,
        if s.group_commit {
            format!(" (the edge runs {} per location)", s.batch_shards)
        } else {
            String::new()
        },
        s.batch_size
    )?;
    let services: Vec<String> = ["Workers", "Durable Objects", "SQS", "Kinesis", "Lambda"]
        .iter()
        .filter(|sv| p.bill.lines.iter().any(|l| l.service == **sv))
        .map(|sv| format!("{sv} ${}", n(p.bill.service(sv))))
        .collect();
    writeln!(
        out,
        "  bill: ${} a month (${} per million events): {}",
        n(p.bill.total()),
        n(p.bill.per_million_events()),
        services.join(", ")
    )?;
    match p.drain.seconds {
        Some(t) => writeln!(
            out,
            "  burst of {} events: in the table after {} s (bound: {})",
            n(p.input.load.burst_events),
            n(t),
            p.drain.bound
        )?,
        None => writeln!(
            out,
            "  burst of {} events: never drains ({} has no capacity to spare)",
            n(p.input.load.burst_events),
            p.drain.bound
        )?,
    }
    for (k, list) in &p.limits {
        let top = list.iter().find(|u| !u.outage);
        let what = match (binding(list), top) {
            (Some(u), _) => format!("binds: {} ({}%)", u.limit, n(u.share * 100.0)),
            (None, Some(u)) => format!(
                "nothing binds; most used: {} ({}%)",
                u.limit,
                n(u.share * 100.0)
            ),
            (None, None) => "nothing binds".to_owned(),
        };
        let spill = outage(list).map_or(String::new(), |u| {
            format!(
                "; through an SQS outage the spill queue {}%",
                n(u.share * 100.0)
            )
        });
        writeln!(out, "  {}x: {what}{spill}", n(*k))?;
    }
    Ok(())
}
