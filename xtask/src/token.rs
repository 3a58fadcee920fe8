//! `cargo xtask token --key-id ID --origin https://... [--ttl 10m]`: mints a browser token
//! (`spillway_shared::token`) and prints it, so a page can be tried against the local pipeline
//! or a deployment without writing the backend's few lines first.
//!
//! The secret comes from `TOKEN_SECRETS` (the edge's own format, `key_id:secret` pairs; the
//! first entry of the key signs), in the environment or else in `.spillway/dev.env`, never from
//! the command line: arguments are readable by every user of the machine (`ps`,
//! `/proc/<pid>/cmdline`) and stay in shell history. It does not talk to the edge.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use spillway_shared::token::mint;

const USAGE: &str =
    "usage: cargo xtask token --key-id ID --origin https://app.example.com [--ttl 10m]

Prints a browser token for the key, valid from that origin (exactly as the browser sends its
Origin header) for --ttl (default 1h; s, m, h or d; the edge refuses tokens living longer than
its TOKEN_MAX_TTL_SECS, default 24h). The secret is read from TOKEN_SECRETS (key_id:secret
pairs; the first of the key signs) in the environment, else in .spillway/dev.env.";

/// Default lifetime: an hour, well inside the edge's default maximum (a day).
const DEFAULT_TTL_SECS: u64 = 3_600;

pub fn main(args: &[String]) -> Result<()> {
    let mut key_id = None;
    let mut origin = None;
    let mut ttl = DEFAULT_TTL_SECS;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--key-id" => key_id = Some(value()?.clone()),
            "--origin" => origin = Some(value()?.clone()),
            "--ttl" => ttl = parse_ttl(value()?)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let (Some(key_id), Some(origin)) = (key_id, origin) else {
        bail!("--key-id and --origin are required\n\n{USAGE}");
    };
    let secrets = match std::env::var("TOKEN_SECRETS") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => dev_env_secrets()?,
    };
    let secret = secret_of(&secrets, &key_id)
        .with_context(|| format!("TOKEN_SECRETS has no entry for key id {key_id:?}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let expires = now + ttl;
    let token = mint(&key_id, &origin, expires, secret.as_bytes())?;
    eprintln!("token for key {key_id}, from {origin}, expires at unix {expires} (in {ttl} s)");
    println!("{token}");
    Ok(())
}

/// `TOKEN_SECRETS` from `.spillway/dev.env`, where a local pipeline keeps its settings.
fn dev_env_secrets() -> Result<String> {
    let path = crate::step::root().join(".spillway/dev.env");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "TOKEN_SECRETS is not set and {} cannot be read",
            path.display()
        )
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("TOKEN_SECRETS="))
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "TOKEN_SECRETS is set neither in the environment nor in {}",
                path.display()
            )
        })
}

/// The first secret of `key_id` in `key_id:secret,...` (the one that signs; the edge accepts
/// all of them, which is how a secret is rotated).
fn secret_of<'a>(secrets: &'a str, key_id: &str) -> Option<&'a str> {
    secrets
        .split(',')
        .filter_map(|pair| pair.trim().split_once(':'))
        .find(|(id, _)| id.trim() == key_id)
        .map(|(_, s)| s.trim())
}

/// `600`, `30s`, `10m`, `1h`, `1d`.
fn parse_ttl(raw: &str) -> Result<u64> {
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("--ttl {raw:?} is not a duration such as 10m"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("--ttl {raw:?}: the unit must be s, m, h or d"),
    };
    match n.checked_mul(unit) {
        Some(0) | None => bail!("--ttl {raw:?} must be positive and reasonable"),
        Some(secs) => Ok(secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn ttls_and_secrets() {
        assert_eq!(parse_ttl("600").ok(), Some(600));
        assert_eq!(parse_ttl("10m").ok(), Some(600));
        assert_eq!(parse_ttl("2h").ok(), Some(7_200));
        assert_eq!(parse_ttl("1d").ok(), Some(86_400));
        assert!(parse_ttl("0").is_err() && parse_ttl("5w").is_err() && parse_ttl("m").is_err());
        let s = "web:first-secret, app:other , web:second-secret";
        assert_eq!(secret_of(s, "web"), Some("first-secret"));
        assert_eq!(secret_of(s, "app"), Some("other"));
        assert_eq!(secret_of(s, "nobody"), None);
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_765_000_000;

    /// The fenced block that follows `marker` in docs/deploy.md.
    fn snippet(marker: &str) -> String {
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy.md"),
        )
        .expect("docs/deploy.md");
        let after = &docs[docs.find(marker).expect(marker)..];
        let body = &after[after.find("```").expect("a fenced block")..];
        let body = &body[body.find('\n').expect("fence line") + 1..];
        body[..body.find("```").expect("closing fence")].to_owned()
    }

    fn run(cmd: &str, flag: &str, program: String) -> String {
        let out = Command::new(cmd)
            .args([flag, &program])
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e} (the docs' snippet cannot be checked)"));
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// The docs' Node and Python lines mint the very tokens the edge checks.
    #[test]
    fn the_docs_snippets_mint_what_the_edge_verifies() {
        let want = |key: &str, origin: &str| {
            mint(key, origin, NOW + 600, SECRET.as_bytes()).expect("mint")
        };
        for (key, origin) in [
            ("web", "https://app.example.com"),
            ("shop.eu", "http://localhost:3000"),
        ] {
            let node = run(
                "node",
                "-e",
                format!(
                    "{}\nprocess.stdout.write(spillwayToken({key:?}, {origin:?}, {SECRET:?}, 600, {NOW}.4));",
                    snippet("<!-- token-node -->")
                ),
            );
            assert_eq!(node, want(key, origin), "node");
            let python = run(
                "python3",
                "-c",
                format!(
                    "{}\nprint(spillway_token({key:?}, {origin:?}, {SECRET:?}, 600, {NOW}.4))",
                    snippet("<!-- token-python -->")
                ),
            );
            assert_eq!(python, want(key, origin), "python");
        }
    }
}
