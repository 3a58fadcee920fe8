//! The command line of `spillway-dlq`: flags first, then the environment, checked before any
//! SQS call.

use thiserror::Error;

use spillway_shared::Keyring;

use crate::config::origin_of;
use crate::keys::keyring_from_env;

pub const USAGE: &str = "\
usage: spillway-dlq <list|peek|redrive> [options]

  list       one line per dead letter: message id, receives, sent and first-receive times,
             body size, why it failed where the body tells, and for a Kinesis record
             (spillway.source=kinesis) its stream, shard, sequence number and reason
  peek       the same, plus every event id and the body
  redrive    move dead letters back: an SQS one to the main queue (SendMessageBatch), a
             Kinesis one into its stream (PutRecords, its partition key); each is deleted
             from the DLQ only once the queue or stream acknowledged it

options:
  --dlq-url URL     the dead-letter queue (default: $SQS_DLQ_URL, else $DEAD_LETTER_QUEUE_URL)
  --queue-url URL   the main queue, for redriving SQS dead letters (default: $SQS_QUEUE_URL;
                    not required with BUFFER=kinesis)
  --max N           at most N messages (default: list 100, peek 10, redrive all the DLQ
                    holds when it starts)
  --dry-run         redrive: only print what would be moved
  -h, --help        this text

environment: SQS_ENDPOINT (default: the origin of the DLQ URL), KINESIS_ENDPOINT (default:
the regional endpoint of each stream's ARN), BUFFER, AWS_REGION and the AWS
default credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...);
ENVELOPE_KEYS (the consumer's kid:secret pairs), when set, checks each body's seal, so a
message not sent by the edge, or altered, is named as such.
Bodies are printed with control characters escaped (\u{1b}), never raw.
Looking at messages never deletes them; it counts as a receive of the DLQ's copy.";

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    List,
    Peek,
    Redrive { dry_run: bool },
}

/// Everything a run needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqArgs {
    pub command: Command,
    pub dlq_url: String,
    /// Required for `redrive` only, unless `BUFFER=kinesis` (a Kinesis consumer's DLQ holds
    /// Kinesis dead letters, which go back into their stream instead).
    pub queue_url: Option<String>,
    /// `KINESIS_ENDPOINT` (an origin), for a local stream; `None`: each stream's regional
    /// endpoint.
    pub kinesis_endpoint: Option<String>,
    /// `SQS_ENDPOINT`, default: the origin of the DLQ URL (as the contract says for
    /// `SQS_QUEUE_URL`).
    pub endpoint: String,
    /// How many messages at most.
    pub max: usize,
    /// `ENVELOPE_KEYS`, when set: each dead letter's seal is checked, so a forged or altered
    /// message is named as such.
    pub keys: Option<Keyring>,
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Run(DlqArgs),
}

/// A command line or setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsageError {
    #[error("no command given")]
    NoCommand,
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    #[error("unknown option `{0}`")]
    UnknownOption(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("--max: `{0}` is not a whole number of at least 1")]
    BadMax(String),
    #[error("--dry-run only applies to redrive")]
    DryRunWithoutRedrive,
    #[error("{0} is required (or {1})")]
    Missing(&'static str, &'static str),
    #[error("{name}: `{value}` is not an http(s) URL")]
    NotAUrl { name: &'static str, value: String },
    #[error("the main queue and the DLQ are the same queue")]
    SameQueue,
    #[error("{0}: FIFO queues are not supported")]
    Fifo(String),
    #[error("{0}")]
    Keys(String),
}

/// Parses the arguments after the program name; flags win over the environment.
pub fn parse_args(
    args: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, UsageError> {
    let mut command = None;
    let mut dlq_flag = None;
    let mut queue_flag = None;
    let mut max = None;
    let mut dry_run = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &'static str| {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or(UsageError::MissingValue(name))
        };
        match flag {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--dlq-url" => dlq_flag = Some(value("--dlq-url")?),
            "--queue-url" => queue_flag = Some(value("--queue-url")?),
            "--max" => {
                let raw = value("--max")?;
                max = Some(
                    raw.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or(UsageError::BadMax(raw))?,
                );
            }
            "--dry-run" if inline.is_none() => dry_run = true,
            f if f.starts_with('-') => return Err(UsageError::UnknownOption(arg.clone())),
            "list" | "peek" | "redrive" if command.is_none() => command = Some(flag.to_owned()),
            _ => return Err(UsageError::UnknownCommand(arg.clone())),
        }
    }
    let command = match command.as_deref() {
        None => return Err(UsageError::NoCommand),
        Some("list") => Command::List,
        Some("peek") => Command::Peek,
        _ => Command::Redrive { dry_run },
    };
    if dry_run && !matches!(command, Command::Redrive { .. }) {
        return Err(UsageError::DryRunWithoutRedrive);
    }
    let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let url = |name: &'static str, value: String| -> Result<String, UsageError> {
        let value = value.trim().to_owned();
        if origin_of(&value).is_none() {
            return Err(UsageError::NotAUrl { name, value });
        }
        if value.ends_with(".fifo") {
            return Err(UsageError::Fifo(value));
        }
        Ok(value)
    };
    let dlq_url = dlq_flag
        .or_else(|| set("SQS_DLQ_URL"))
        .or_else(|| set("DEAD_LETTER_QUEUE_URL"))
        .ok_or(UsageError::Missing("--dlq-url", "SQS_DLQ_URL"))?;
    let kinesis = set("BUFFER").is_some_and(|b| b.trim() == "kinesis");
    let dlq_url = url("the DLQ URL", dlq_url)?;
    let queue_url = match queue_flag.or_else(|| set("SQS_QUEUE_URL")) {
        Some(q) => Some(url("the queue URL", q)?),
        None if matches!(command, Command::Redrive { .. }) && !kinesis => {
            return Err(UsageError::Missing("--queue-url", "SQS_QUEUE_URL"))
        }
        None => None,
    };
    if queue_url.as_deref() == Some(dlq_url.as_str()) {
        return Err(UsageError::SameQueue);
    }
    let endpoint = match set("SQS_ENDPOINT") {
        Some(e) => origin_of(&e).ok_or(UsageError::NotAUrl {
            name: "SQS_ENDPOINT",
            value: e,
        })?,
        // `url` above checked that it has one.
        None => origin_of(&dlq_url).unwrap_or_default(),
    };
    let kinesis_endpoint = match set("KINESIS_ENDPOINT") {
        Some(e) => Some(origin_of(&e).ok_or(UsageError::NotAUrl {
            name: "KINESIS_ENDPOINT",
            value: e,
        })?),
        None => None,
    };
    let max = max.unwrap_or(match command {
        Command::List => 100,
        Command::Peek => 10,
        Command::Redrive { .. } => usize::MAX,
    });
    let keys = match set("ENVELOPE_KEYS") {
        None => None,
        Some(_) => Some(keyring_from_env(lookup).map_err(|e| UsageError::Keys(e.to_string()))?),
    };
    Ok(Parsed::Run(DlqArgs {
        command,
        dlq_url,
        queue_url,
        kinesis_endpoint,
        endpoint,
        max,
        keys,
    }))
}
