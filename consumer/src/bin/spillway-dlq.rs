//! `spillway-dlq`: list and peek at the dead-letter queue, with the reason each message failed
//! where its body tells (and a Kinesis record's origin), and redrive messages to the main queue
//! or, for a Kinesis record, into its stream (with a dry run). Works against
//! the local SQS and against AWS. Only wiring lives here; see `spillway_consumer::tools::dlq`.
//!
//! Prints plain text on stdout (one line per message, then a summary); exits 2 on a bad
//! command line, 1 when a redrive left messages behind or an SQS call failed.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use aws_config::BehaviorVersion;
use spillway_consumer::tools::dlq::{self, Command, DlqArgs, MessageInfo, Parsed, USAGE};

/// `println!` without the panic when the reader went away (`spillway-dlq list | head`): the
/// work (a redrive) still finishes, the rest of the report is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match dlq::parse_args(&args, &|k| std::env::var(k).ok()) {
        Ok(Parsed::Help) => {
            say!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => args,
        Err(e) => {
            eprintln!("spillway-dlq: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("spillway-dlq: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Returns whether everything asked was done.
async fn run(args: DlqArgs) -> anyhow::Result<bool> {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&args.endpoint)
        .load()
        .await;
    sdk.region()
        .context("AWS_REGION is required (or a region in the AWS profile)")?;
    let client = aws_sdk_sqs::Client::new(&sdk);
    match args.command {
        Command::List | Command::Peek => {
            let messages = dlq::scan(&client, &args.dlq_url, args.max).await?;
            dlq::restore(&client, &args.dlq_url, &messages).await;
            for m in &messages {
                match args.command {
                    Command::Peek => say!("{}\n", dlq::peek_text(m, args.keys.as_ref())),
                    _ => say!("{}", MessageInfo::of(m, args.keys.as_ref()).line()),
                }
            }
            let more = if messages.len() == args.max {
                " (--max reached; there may be more)"
            } else {
                ""
            };
            say!(
                "{} message{} in {}{more}",
                messages.len(),
                if messages.len() == 1 { "" } else { "s" },
                dlq::printable(&args.dlq_url)
            );
            Ok(true)
        }
        Command::Redrive { dry_run } => {
            let queue = args.queue_url.as_deref();
            let mut streams = dlq::Streams::new(args.kinesis_endpoint.clone());
            // "All" is what the queue holds as the pass starts: a record that fails again is
            // dead-lettered anew during the pass and waits for the next one.
            let max = if args.max == usize::MAX {
                dlq::depth(&client, &args.dlq_url).await?
            } else {
                args.max
            };
            let report =
                dlq::redrive(&client, &args.dlq_url, queue, &mut streams, max, dry_run).await?;
            // Where SQS dead letters go; Kinesis ones go to the stream each names.
            let queue = queue.unwrap_or("their streams");
            if dry_run {
                for id in &report.would_move {
                    say!("would move {id}");
                }
                say!(
                    "dry run: would move {} message(s) from {} to {queue}; moved nothing",
                    report.would_move.len(),
                    args.dlq_url
                );
                return Ok(true);
            }
            for (old, new) in &report.moved {
                say!("moved {old} -> {new}");
            }
            for (id, why) in &report.not_moved {
                say!("not moved {id}: {why}");
            }
            for (id, why) in &report.not_deleted {
                say!(
                    "sent but not deleted from the DLQ {id}: {why} \
                     (now in both queues; harmless, events are stored once)"
                );
            }
            say!(
                "moved {} message(s) from {} to {queue}; {} not moved, {} not deleted",
                report.moved.len(),
                args.dlq_url,
                report.not_moved.len(),
                report.not_deleted.len()
            );
            Ok(report.not_moved.is_empty() && report.not_deleted.is_empty())
        }
    }
}
