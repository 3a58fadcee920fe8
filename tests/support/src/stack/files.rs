//! What a stack writes for others to read: `dev.env` (the contract's settings, for shells and
//! tools), the `.dev.vars` secrets file wrangler reads, and the wrangler configuration that
//! serves the prebuilt worker. Secrets go only into files created `0600`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{ACCESS_KEY_ID, REGION};
use crate::SqsKind;

/// What `.spillway/dev.env` holds.
#[derive(Debug, Clone)]
pub struct DevEnv {
    pub ingest_url: String,
    pub ingest_key: String,
    pub database_url: String,
    pub sqs_endpoint: String,
    pub sqs_queue_url: String,
    pub sqs_dlq_url: String,
    /// Which server answers at `sqs_endpoint` (`SQS_SERVER=moto|localstack`).
    pub sqs_server: SqsKind,
    /// Random per stack, like the ingest key: the local SQS accepts any, and a fixed one would
    /// be a secret everybody knows.
    pub aws_secret_access_key: String,
    /// `ENVELOPE_KEYS` of the edge and the consumer (`kid:secret`): random per stack. In
    /// `dev.env` so that `spillway-dlq` can check the seals of dead letters.
    pub envelope_keys: String,
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
        ] {
            let _ = writeln!(s, "{k}={v}");
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

/// The project's wrangler.toml without its `[build]` table and with `main` made absolute.
///
/// The stack serves the worker that `cargo xtask` already built; letting `wrangler dev` run the
/// build command again would cost a wasm-opt pass per start (and per end-to-end test).
pub fn prebuilt_config(root: &Path) -> Result<String> {
    let text = fs::read_to_string(root.join("wrangler.toml")).context("reading wrangler.toml")?;
    let mut out = String::new();
    let mut in_build = false;
    let mut main = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_build = trimmed == "[build]";
        }
        if in_build {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("main") {
            if let Some(value) = rest.trim_start().strip_prefix('=') {
                let path = root.join(value.trim().trim_matches('"'));
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

/// `config` (a wrangler.toml) without its `[[queues.producers]]` and `[[queues.consumers]]`
/// tables: the worker then has no spill queue, and answers `503` when SQS is down.
pub fn without_queues(config: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in config.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            skipping = t.starts_with("[[queues.");
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
    }
}
