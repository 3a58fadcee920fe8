//! What a stack writes for others to read: `dev.env` (the contract's settings, for shells and
//! tools), the `.dev.vars` secrets file wrangler reads, and the wrangler configuration that
//! serves the prebuilt worker. Secrets go only into files created `0600`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{BufferKind, ACCESS_KEY_ID, REGION};
use crate::SqsKind;

/// The Kinesis part of `dev.env`, present when the buffer is Kinesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisEnv {
    /// `KINESIS_ENDPOINT`: the local Kinesis API's origin.
    pub endpoint: String,
    /// `KINESIS_STREAM_ARN`.
    pub stream_arn: String,
    /// `ON_FAILURE_DESTINATION`: the local SQS queue the poller sends a failed batch's
    /// metadata (its sequence-number range) to, as the event source mapping's on-failure
    /// destination does. The records themselves go to `SQS_DLQ_URL` (the consumer's
    /// `DEAD_LETTER_QUEUE_URL`).
    pub on_failure_url: String,
}

/// What `.spillway/dev.env` holds.
#[derive(Debug, Clone)]
pub struct DevEnv {
    pub ingest_url: String,
    pub ingest_key: String,
    pub database_url: String,
    pub sqs_endpoint: String,
    /// The main queue; empty with the Kinesis buffer, which has none (the local SQS then holds
    /// only the dead-letter queue and the on-failure destination).
    pub sqs_queue_url: String,
    /// The dead-letter queue: with SQS, where the queue's redrive policy moves a message after
    /// `maxReceiveCount` receives; with Kinesis, where the consumer sends a record it can never
    /// store (`DEAD_LETTER_QUEUE_URL`). `spillway-dlq` lists it either way.
    pub sqs_dlq_url: String,
    /// Which server answers at `sqs_endpoint` (`SQS_SERVER=moto|localstack`).
    pub sqs_server: SqsKind,
    /// Random per stack, like the ingest key: the local SQS accepts any, and a fixed one would
    /// be a secret everybody knows.
    pub aws_secret_access_key: String,
    /// `ENVELOPE_KEYS` of the edge and the consumer (`kid:secret`): random per stack. In
    /// `dev.env` so that `spillway-dlq` can check the seals of dead letters.
    pub envelope_keys: String,
    /// `TOKEN_SECRETS` of the edge (`key_id:secret`, one per ingest key): random per stack. In
    /// `dev.env` so that `cargo xtask token` mints browser tokens for the local edge.
    pub token_secrets: String,
    /// `BUFFER=sqs|kinesis` (the contract's name).
    pub buffer: BufferKind,
    /// With `BUFFER=kinesis`, the stream's settings.
    pub kinesis: Option<KinesisEnv>,
}

impl DevEnv {
    /// Shell `KEY=value` lines, as the contract names them.
    pub fn to_shell(&self) -> String {
        let mut s = String::new();
        for (k, v) in [
            ("INGEST_URL", self.ingest_url.as_str()),
            ("INGEST_KEY", &self.ingest_key),
            ("DATABASE_URL", &self.database_url),
            ("SQS_ENDPOINT", &self.sqs_endpoint),
            ("SQS_QUEUE_URL", &self.sqs_queue_url),
            ("SQS_DLQ_URL", &self.sqs_dlq_url),
            ("SQS_SERVER", self.sqs_server.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", &self.aws_secret_access_key),
            ("ENVELOPE_KEYS", &self.envelope_keys),
            ("TOKEN_SECRETS", &self.token_secrets),
            ("BUFFER", self.buffer.as_str()),
        ] {
            let _ = writeln!(s, "{k}={v}");
        }
        if let Some(k) = &self.kinesis {
            for (name, v) in [
                ("KINESIS_ENDPOINT", &k.endpoint),
                ("KINESIS_STREAM_ARN", &k.stream_arn),
                ("ON_FAILURE_DESTINATION", &k.on_failure_url),
            ] {
                let _ = writeln!(s, "{name}={v}");
            }
        }
        s
    }

    /// Reads a `dev.env` file back.
    pub fn read(path: &Path) -> Result<DevEnv> {
        let text = fs::read_to_string(path)?;
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_owned)
                .with_context(|| format!("{} has no {k}", path.display()))
        };
        // Absent from files written before the buffer could be chosen: those ran SQS.
        let buffer = match get("BUFFER") {
            Ok(name) => name.parse()?,
            Err(_) => BufferKind::Sqs,
        };
        let kinesis = match buffer {
            BufferKind::Sqs => None,
            BufferKind::Kinesis => Some(KinesisEnv {
                endpoint: get("KINESIS_ENDPOINT")?,
                stream_arn: get("KINESIS_STREAM_ARN")?,
                on_failure_url: get("ON_FAILURE_DESTINATION")?,
            }),
        };
        Ok(DevEnv {
            ingest_url: get("INGEST_URL")?,
            ingest_key: get("INGEST_KEY")?,
            database_url: get("DATABASE_URL")?,
            sqs_endpoint: get("SQS_ENDPOINT")?,
            sqs_queue_url: get("SQS_QUEUE_URL")?,
            sqs_dlq_url: get("SQS_DLQ_URL")?,
            // Absent from files written before LocalStack could be chosen: those ran moto.
            sqs_server: match get("SQS_SERVER") {
                Ok(name) => name.parse()?,
                Err(_) => SqsKind::Moto,
            },
            aws_secret_access_key: get("AWS_SECRET_ACCESS_KEY")?,
            // Absent from files written before envelopes were sealed.
            envelope_keys: get("ENVELOPE_KEYS").unwrap_or_default(),
            // Absent from files written before browser tokens.
            token_secrets: get("TOKEN_SECRETS").unwrap_or_default(),
            buffer,
            kinesis,
        })
    }
}

/// The text of a `.dev.vars` file (dotenv) setting `vars`. Values are single-quoted, so that
/// nothing in them is expanded or read as a comment; one that cannot be written so is refused.
pub fn dev_vars(vars: &[(&str, String)]) -> Result<String> {
    let mut out = String::new();
    for (k, v) in vars {
        if v.contains(['\'', '\n', '\r']) {
            bail!("the value of {k} cannot go into .dev.vars (a quote or a line break)");
        }
        let _ = writeln!(out, "{k}='{v}'");
    }
    Ok(out)
}

/// Writes `text` to `path`, readable by its owner only from the moment the file exists (a
/// mode set after writing would leave a moment when others can read it). Replaces any file
/// already there, whatever its mode was.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("replacing {}", path.display()))
        }
        _ => {}
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The project's wrangler.toml without its `[build]` tables (the top level's and each
/// environment's, `[env.NAME.build]`) and with `main` made absolute.
///
/// The stack serves the worker that `cargo xtask` already built; letting `wrangler dev` run the
/// build command again would cost a wasm-opt pass per start (and per end-to-end test).
pub fn prebuilt_config(root: &Path) -> Result<String> {
    prebuilt(root, None)
}

/// [`prebuilt_config`] with every `main` set to `entry` (the entry module of a build kept
/// elsewhere than `edge/build`, see [`super::worker_dir`]).
pub fn prebuilt_config_serving(root: &Path, entry: &Path) -> Result<String> {
    prebuilt(root, Some(entry))
}

fn prebuilt(root: &Path, entry: Option<&Path>) -> Result<String> {
    let text = fs::read_to_string(root.join("wrangler.toml")).context("reading wrangler.toml")?;
    let mut out = String::new();
    let mut in_build = false;
    let mut main = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_build = is_build_table(trimmed);
        }
        if in_build {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("main") {
            if let Some(value) = rest.trim_start().strip_prefix('=') {
                let path = entry.map_or_else(
                    || root.join(value.trim().trim_matches('"')),
                    Path::to_path_buf,
                );
                if !path.exists() {
                    bail!(
                        "{} is missing: build the worker first (`cargo xtask dev` or `cargo xtask test` does)",
                        path.display()
                    );
                }
                let _ = writeln!(out, "main = \"{}\"", path.display());
                main = Some(path);
                continue;
            }
        }
        let _ = writeln!(out, "{line}");
    }
    if main.is_none() {
        bail!("wrangler.toml has no `main`");
    }
    Ok(out)
}

/// Is this table header `[build]` or `[env.NAME.build]`?
fn is_build_table(header: &str) -> bool {
    header == "[build]"
        || header
            .strip_prefix("[env.")
            .and_then(|h| h.strip_suffix(".build]"))
            .is_some_and(|name| !name.is_empty() && !name.contains(['.', '[', ']']))
}

/// `config` (a wrangler.toml) without its `[[queues.producers]]` and `[[queues.consumers]]`
/// tables, the top level's and each environment's (`[[env.NAME.queues.*]]`): the worker then
/// has no spill queue, and answers `503` when its buffer is down.
pub fn without_queues(config: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in config.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            skipping = t.starts_with("[[queues.")
                || t.strip_prefix("[[env.").is_some_and(|rest| {
                    rest.split_once('.')
                        .is_some_and(|(_, table)| table.starts_with("queues."))
                });
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn without_queues_drops_only_the_queue_tables() {
        let config = "name = \"x\"\n[[queues.producers]]\nbinding = \"SPILL_QUEUE\"\n\n[[queues.consumers]]\nqueue = \"q\"\n[vars]\nA = \"1\"\n";
        assert_eq!(without_queues(config), "name = \"x\"\n[vars]\nA = \"1\"\n");
        let config = "[env.kinesis]\nname = \"k\"\n[[env.kinesis.queues.producers]]\nbinding = \"SPILL_QUEUE\"\n[[env.kinesis.queues.consumers]]\nqueue = \"q\"\n[env.kinesis.vars]\nBUFFER = \"kinesis\"\n[[env.kinesis.durable_objects.bindings]]\nname = \"BATCHER\"\n";
        assert_eq!(
            without_queues(config),
            "[env.kinesis]\nname = \"k\"\n[env.kinesis.vars]\nBUFFER = \"kinesis\"\n[[env.kinesis.durable_objects.bindings]]\nname = \"BATCHER\"\n"
        );
    }

    fn env(buffer: BufferKind) -> DevEnv {
        DevEnv {
            ingest_url: "http://127.0.0.1:8787/v1/events".into(),
            ingest_key: "k".into(),
            database_url: "postgres://u@127.0.0.1:54329/spillway".into(),
            sqs_endpoint: "http://127.0.0.1:9324".into(),
            sqs_queue_url: match buffer {
                BufferKind::Sqs => "http://127.0.0.1:9324/123456789012/spillway-events".into(),
                BufferKind::Kinesis => String::new(),
            },
            sqs_dlq_url: "http://127.0.0.1:9324/123456789012/spillway-events-dlq".into(),
            sqs_server: SqsKind::Moto,
            aws_secret_access_key: "s".into(),
            envelope_keys: "local-1:e".into(),
            token_secrets: "web:t".into(),
            buffer,
            kinesis: (buffer == BufferKind::Kinesis).then(|| KinesisEnv {
                endpoint: "http://127.0.0.1:40123".into(),
                stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events".into(),
                on_failure_url: "http://127.0.0.1:9324/123456789012/spillway-events-failures"
                    .into(),
            }),
        }
    }

    fn round_trip(e: &DevEnv) -> (String, DevEnv) {
        let path = crate::run_dir().join(crate::unique("dev-env"));
        let text = e.to_shell();
        fs::write(&path, &text).expect("write");
        let back = DevEnv::read(&path).expect("read");
        fs::remove_file(&path).ok();
        (text, back)
    }

    #[test]
    fn dev_env_round_trips_with_either_buffer() {
        let (text, back) = round_trip(&env(BufferKind::Sqs));
        assert!(text.contains("\nBUFFER=sqs\n"), "{text}");
        assert!(!text.contains("KINESIS"), "{text}");
        assert_eq!((back.buffer, back.kinesis), (BufferKind::Sqs, None));
        assert_eq!(back.token_secrets, "web:t");

        let e = env(BufferKind::Kinesis);
        let (text, back) = round_trip(&e);
        for line in [
            "BUFFER=kinesis",
            "KINESIS_ENDPOINT=http://127.0.0.1:40123",
            "KINESIS_STREAM_ARN=arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events",
            "SQS_QUEUE_URL=",
            "SQS_DLQ_URL=http://127.0.0.1:9324/123456789012/spillway-events-dlq",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert_eq!(back.buffer, BufferKind::Kinesis);
        assert_eq!(back.kinesis, e.kinesis);
        assert_eq!(back.sqs_queue_url, "");
        assert_eq!(back.sqs_dlq_url, e.sqs_dlq_url);
    }

    #[test]
    fn an_old_dev_env_is_sqs_and_a_kinesis_one_needs_its_stream() {
        let path = crate::run_dir().join(crate::unique("dev-env"));
        let old: String = env(BufferKind::Sqs)
            .to_shell()
            .lines()
            .filter(|l| !l.starts_with("BUFFER="))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&path, old).expect("write");
        assert_eq!(DevEnv::read(&path).expect("read").buffer, BufferKind::Sqs);
        let partial: String = env(BufferKind::Kinesis)
            .to_shell()
            .lines()
            .filter(|l| !l.starts_with("KINESIS_STREAM_ARN="))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&path, partial).expect("write");
        let err = DevEnv::read(&path).expect_err("no stream");
        assert!(
            err.to_string().contains("has no KINESIS_STREAM_ARN"),
            "{err}"
        );
        fs::remove_file(&path).ok();
    }

    #[test]
    fn build_tables_are_the_top_levels_and_each_environments() {
        assert!(is_build_table("[build]"));
        assert!(is_build_table("[env.kinesis.build]"));
        assert!(!is_build_table("[env.kinesis.vars]"));
        assert!(!is_build_table("[env..build]"));
        assert!(!is_build_table("[env.a.b.build]"));
        assert!(!is_build_table("[[env.kinesis.queues.producers]]"));
    }

    #[test]
    fn prebuilt_config_drops_every_build_table() {
        let root = crate::run_dir().join(crate::unique("prebuilt"));
        fs::create_dir_all(root.join("edge")).expect("dir");
        fs::write(root.join("edge/entry.mjs"), "").expect("entry");
        fs::write(
            root.join("wrangler.toml"),
            "name = \"w\"\nmain = \"edge/entry.mjs\"\n[build]\ncommand = \"a\"\n[vars]\nX = \"1\"\n\
             [env.kinesis]\nname = \"w\"\n[env.kinesis.build]\ncommand = \"b\"\n[env.kinesis.vars]\nBUFFER = \"kinesis\"\n",
        )
        .expect("toml");
        let out = prebuilt_config(&root).expect("config");
        assert!(!out.contains("command"), "{out}");
        assert!(
            out.contains("[env.kinesis.vars]\nBUFFER = \"kinesis\""),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "main = \"{}\"",
                root.join("edge/entry.mjs").display()
            )),
            "{out}"
        );
        let elsewhere = root.join("target/worker-kinesis/entry.mjs");
        fs::create_dir_all(elsewhere.parent().expect("parent")).expect("dir");
        fs::write(&elsewhere, "").expect("entry");
        let out = prebuilt_config_serving(&root, &elsewhere).expect("config");
        assert!(
            out.contains(&format!("main = \"{}\"", elsewhere.display())),
            "{out}"
        );
        assert!(!out.contains("edge/entry.mjs"), "{out}");
        fs::remove_dir_all(&root).ok();
    }
}
