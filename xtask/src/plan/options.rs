//! The options of `cargo xtask plan`, typed and checked before anything is computed, with
//! errors that name the option. Parsing only: what the numbers mean is `model.rs`'s.

use std::fmt;
use std::path::PathBuf;

use super::model::{Arrivals, Buffer};

pub const USAGE: &str = "usage: cargo xtask plan --rps N [options]

  --rps N                 requests per second, all locations together (required)
  --events-per-request N  events in each request (1; 1 to 1,000)
  --bytes-per-event N     bytes of one event as the client sends it (512; 2 to 65,536)
  --locations N           Cloudflare locations the traffic spreads over, evenly (10)
  --connections N         the database's connection budget for the consumer (5, the
                          templates' default; SQS needs at least 2)
  --write-rate N          events/s one connection stores (default: measured here, from
                          benches/results/results.json)
  --buffer B              sqs, kinesis (on-demand) or kinesis-provisioned (sqs)
  --burst N               events arriving at once on top of the rate (one minute of the rate)
  --window-ms N           BATCH_WINDOW_MS where group commit pays (20)
  --send-ms N             a batcher's call to the buffer, location to region (30)
  --memory-mb N           the consumer's FunctionMemorySize (512)
  --arrivals A            poisson (independent clients) or uniform (evenly spaced) (poisson)
  --isolates N            Worker isolates a location's traffic spreads over: an isolate's
                          requests for one batcher share a Durable Object request (default:
                          none share one; --here: 1)
  --here                  this machine's set-up instead of a deployment: one location, the
                          edge's measured rate as its ceiling, the local poller (2
                          connections, no scale-up), evenly spaced arrivals, 10 ms sends
  --results PATH          the bench's results file (benches/results/results.json)
  --brief                 the settings, the bill, the burst and the limits in a few lines
  --sources               print the documented limits and prices it uses, with their sources";

/// The options, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub rps: f64,
    pub events_per_request: u32,
    pub bytes_per_event: u32,
    pub locations: u32,
    pub connections: u32,
    pub write_rate: Option<f64>,
    pub buffer: Buffer,
    /// `None`: one minute of the rate's events.
    pub burst: Option<f64>,
    pub window_ms: u32,
    pub send_ms: f64,
    pub memory_mb: u32,
    pub arrivals: Arrivals,
    /// Isolates per location; `None`: every request in an isolate of its own.
    pub isolates: Option<u32>,
    pub here: bool,
    /// A few lines instead of the whole report.
    pub brief: bool,
    /// `None`: the repository's `benches/results/results.json`.
    pub results: Option<PathBuf>,
}

/// What is wrong with the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionError {
    Missing(&'static str),
    Unknown(String),
    NoValue(String),
    Invalid {
        option: String,
        value: String,
        why: String,
    },
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::Missing(o) => write!(f, "{o} is required"),
            OptionError::Unknown(o) => write!(f, "unknown option {o}"),
            OptionError::NoValue(o) => write!(f, "{o} needs a value"),
            OptionError::Invalid { option, value, why } => {
                write!(f, "{option} {value}: {why}")
            }
        }
    }
}

impl std::error::Error for OptionError {}

fn invalid(option: &str, value: &str, why: impl Into<String>) -> OptionError {
    OptionError::Invalid {
        option: option.to_owned(),
        value: value.to_owned(),
        why: why.into(),
    }
}

fn number(option: &str, value: &str, min: f64, max: f64) -> Result<f64, OptionError> {
    let x: f64 = value
        .replace('_', "")
        .parse()
        .map_err(|_| invalid(option, value, "not a number"))?;
    if !x.is_finite() || x < min || x > max {
        return Err(invalid(
            option,
            value,
            format!("must be from {min} to {max}"),
        ));
    }
    Ok(x)
}

fn whole(option: &str, value: &str, min: u32, max: u32) -> Result<u32, OptionError> {
    let x = number(option, value, f64::from(min), f64::from(max))?;
    if x.fract() != 0.0 {
        return Err(invalid(option, value, "must be a whole number"));
    }
    Ok(x as u32)
}

/// Parses and checks the arguments after `plan`.
pub fn parse(args: &[String]) -> Result<Options, OptionError> {
    let mut o = Options {
        rps: f64::NAN,
        events_per_request: 1,
        bytes_per_event: 512,
        locations: 10,
        connections: 5,
        write_rate: None,
        buffer: Buffer::Sqs,
        burst: None,
        window_ms: 20,
        send_ms: 30.0,
        memory_mb: 512,
        arrivals: Arrivals::Poisson,
        isolates: None,
        here: false,
        brief: false,
        results: None,
    };
    let (mut locations, mut connections, mut arrivals, mut send) = (None, None, None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--here" || flag == "--brief" {
            o.here |= flag == "--here";
            o.brief |= flag == "--brief";
            continue;
        }
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (flag.as_str(), None),
        };
        let known = [
            "--rps",
            "--events-per-request",
            "--bytes-per-event",
            "--locations",
            "--connections",
            "--write-rate",
            "--buffer",
            "--burst",
            "--window-ms",
            "--send-ms",
            "--memory-mb",
            "--arrivals",
            "--isolates",
            "--results",
        ];
        if !known.contains(&flag) {
            return Err(OptionError::Unknown(flag.to_owned()));
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| OptionError::NoValue(flag.to_owned()))?,
        };
        let v = value.as_str();
        match flag {
            "--rps" => o.rps = number(flag, v, 1e-6, 1e9)?,
            "--events-per-request" => o.events_per_request = whole(flag, v, 1, 1_000)?,
            "--bytes-per-event" => o.bytes_per_event = whole(flag, v, 2, 65_536)?,
            "--locations" => locations = Some(whole(flag, v, 1, 1_000)?),
            "--connections" => connections = Some(whole(flag, v, 1, 1_000)?),
            "--write-rate" => o.write_rate = Some(number(flag, v, 1e-3, 1e9)?),
            "--buffer" => {
                o.buffer = match v {
                    "sqs" => Buffer::Sqs,
                    "kinesis" => Buffer::KinesisOnDemand,
                    "kinesis-provisioned" => Buffer::KinesisProvisioned,
                    _ => return Err(invalid(flag, v, "sqs, kinesis or kinesis-provisioned")),
                }
            }
            "--burst" => o.burst = Some(number(flag, v, 0.0, 1e13)?),
            "--window-ms" => o.window_ms = whole(flag, v, 0, 10_000)?,
            "--send-ms" => send = Some(number(flag, v, 0.0, 60_000.0)?),
            "--memory-mb" => o.memory_mb = whole(flag, v, 128, 10_240)?,
            "--isolates" => o.isolates = Some(whole(flag, v, 1, 1_000_000)?),
            "--arrivals" => {
                arrivals = Some(match v {
                    "poisson" => Arrivals::Poisson,
                    "uniform" => Arrivals::Uniform,
                    _ => return Err(invalid(flag, v, "poisson or uniform")),
                })
            }
            _ => o.results = Some(PathBuf::from(v)),
        }
    }
    if o.rps.is_nan() {
        return Err(OptionError::Missing("--rps"));
    }
    // This machine: one location, the local poller's 2 workers, the bench's evenly spaced
    // client, a local SQS a few milliseconds away; explicit options still win.
    o.locations = locations.unwrap_or(if o.here { 1 } else { o.locations });
    o.connections = connections.unwrap_or(if o.here { 2 } else { o.connections });
    o.arrivals = arrivals.unwrap_or(if o.here {
        Arrivals::Uniform
    } else {
        o.arrivals
    });
    o.send_ms = send.unwrap_or(if o.here { 10.0 } else { o.send_ms });
    // `wrangler dev` runs one isolate.
    if o.here && o.isolates.is_none() {
        o.isolates = Some(1);
    }
    if o.buffer == Buffer::Sqs && o.connections < 2 && !o.here {
        return Err(invalid(
            "--connections",
            &o.connections.to_string(),
            "Lambda's MaximumConcurrency for SQS is at least 2",
        ));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn defaults_and_every_option() {
        let o = parse(&args("--rps 100")).expect("as set up");
        assert_eq!(o.rps, 100.0);
        assert_eq!(
            (
                o.events_per_request,
                o.bytes_per_event,
                o.locations,
                o.connections
            ),
            (1, 512, 10, 5)
        );
        assert_eq!(
            (o.buffer, o.arrivals, o.here),
            (Buffer::Sqs, Arrivals::Poisson, false)
        );
        let o = parse(&args(
            "--rps=10_000 --events-per-request 100 --bytes-per-event 1281 --locations 3 \
             --connections 8 --write-rate 4000 --buffer kinesis-provisioned --burst 30000 \
             --window-ms 0 --send-ms 12.5 --memory-mb 1024 --arrivals uniform --results x.json",
        ))
        .expect("as set up");
        assert_eq!(o.rps, 10_000.0);
        assert_eq!((o.events_per_request, o.bytes_per_event), (100, 1281));
        assert_eq!(
            (o.locations, o.connections, o.window_ms, o.memory_mb),
            (3, 8, 0, 1024)
        );
        assert_eq!(o.write_rate, Some(4000.0));
        assert_eq!(o.buffer, Buffer::KinesisProvisioned);
        assert_eq!((o.burst, o.send_ms), (Some(30_000.0), 12.5));
        assert_eq!(o.arrivals, Arrivals::Uniform);
        assert_eq!(o.results, Some(PathBuf::from("x.json")));
    }

    #[test]
    fn here_sets_this_machines_defaults_and_flags_still_win() {
        let o = parse(&args("--here --rps 300")).expect("as set up");
        assert_eq!((o.locations, o.connections, o.send_ms), (1, 2, 10.0));
        assert_eq!(o.arrivals, Arrivals::Uniform);
        let o =
            parse(&args("--rps 300 --here --connections 4 --arrivals poisson")).expect("as set up");
        assert_eq!((o.connections, o.arrivals), (4, Arrivals::Poisson));
        assert!(!o.brief && parse(&args("--brief --rps 1")).expect("as set up").brief);
    }

    #[test]
    fn errors_name_the_option() {
        let err = |s: &str| parse(&args(s)).expect_err("an error").to_string();
        assert_eq!(err("--locations 3"), "--rps is required");
        assert_eq!(err("--rps 1 --speed 3"), "unknown option --speed");
        assert_eq!(err("--rps"), "--rps needs a value");
        assert_eq!(err("--rps ten"), "--rps ten: not a number");
        assert_eq!(
            err("--rps 0"),
            "--rps 0: must be from 0.000001 to 1000000000"
        );
        assert!(err("--rps 5 --events-per-request 1.5").contains("whole number"));
        assert!(err("--rps 5 --events-per-request 1001").starts_with("--events-per-request"));
        assert!(err("--rps 5 --buffer kafka").contains("sqs, kinesis or kinesis-provisioned"));
        assert!(err("--rps 5 --arrivals bursty").contains("poisson or uniform"));
        assert!(err("--rps 5 --connections 1").contains("at least 2"));
        assert!(parse(&args("--rps 5 --connections 1 --buffer kinesis")).is_ok());
        assert!(err("--rps 5 --rps NaN").contains("--rps NaN"));
    }
}
