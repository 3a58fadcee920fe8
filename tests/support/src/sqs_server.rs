//! Which local SQS server runs, and LocalStack as a [`Service`] beside moto.
//!
//! moto is the default: correct and installed in seconds. LocalStack (core, on the host, no
//! Docker) is about 50 times faster at `SendMessageBatch` and is chosen with `--sqs localstack`
//! (`cargo xtask dev|up`) or [`StackConfig::sqs`](crate::StackConfig::sqs). Both speak the same
//! SQS JSON protocol, so queues are created and watched by the same [`LocalSqs`](crate::LocalSqs)
//! calls; only the account id in their URLs differs (moto 123456789012, LocalStack
//! 000000000000).
//!
//! This module does not install LocalStack: `cargo xtask` does, into `.venv-localstack`.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::{free_port, http_get, port_open, repo_root, run_dir, Moto, Service};

/// The local SQS server. Default [`SqsKind::Moto`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqsKind {
    /// moto's server, from `.venv` (correct; ~160 `SendMessageBatch` calls a second).
    #[default]
    Moto,
    /// LocalStack core on the host, from `.venv-localstack` (~2,000-7,000 a second).
    LocalStack,
}

impl SqsKind {
    /// The name on command lines and in `dev.env` (`SQS_SERVER=`).
    pub fn as_str(self) -> &'static str {
        match self {
            SqsKind::Moto => "moto",
            SqsKind::LocalStack => "localstack",
        }
    }
}

impl fmt::Display for SqsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a name that is neither `moto` nor `localstack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSqs(pub String);

impl fmt::Display for UnknownSqs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown local SQS `{}` (known: moto, localstack)",
            self.0
        )
    }
}

impl std::error::Error for UnknownSqs {}

impl FromStr for SqsKind {
    type Err = UnknownSqs;

    fn from_str(s: &str) -> Result<Self, UnknownSqs> {
        match s {
            "moto" => Ok(SqsKind::Moto),
            "localstack" => Ok(SqsKind::LocalStack),
            other => Err(UnknownSqs(other.to_owned())),
        }
    }
}

/// `.venv-localstack` in the repository, or `$SPILLWAY_LOCALSTACK_VENV`.
pub fn localstack_venv() -> PathBuf {
    std::env::var_os("SPILLWAY_LOCALSTACK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-localstack"))
}

/// The self-signed certificate (key and certificate, PEM) `cargo xtask` makes beside the venv:
/// given to LocalStack so that it never tries to download one.
pub fn localstack_cert(venv: &Path) -> PathBuf {
    venv.join("spillway-cert.pem")
}

/// A running local SQS server of either kind.
#[derive(Debug)]
pub enum SqsServer {
    Moto(Moto),
    LocalStack(LocalStack),
}

impl SqsServer {
    /// Starts `kind` on `port`; LocalStack keeps its state under `state` (a private folder).
    pub fn start(kind: SqsKind, port: u16, state: &Path) -> Result<SqsServer> {
        Ok(match kind {
            SqsKind::Moto => SqsServer::Moto(Moto::start_on(port)?),
            SqsKind::LocalStack => SqsServer::LocalStack(LocalStack::start_on(port, state)?),
        })
    }

    pub fn kind(&self) -> SqsKind {
        match self {
            SqsServer::Moto(_) => SqsKind::Moto,
            SqsServer::LocalStack(_) => SqsKind::LocalStack,
        }
    }

    /// `http://127.0.0.1:PORT`, the endpoint for SQS clients.
    pub fn endpoint(&self) -> String {
        match self {
            SqsServer::Moto(m) => m.endpoint(),
            SqsServer::LocalStack(l) => l.endpoint(),
        }
    }

    pub fn log_path(&self) -> &Path {
        match self {
            SqsServer::Moto(m) => m.log_path(),
            SqsServer::LocalStack(l) => l.service.log_path(),
        }
    }

    /// Has the server exited (it is this process's child)? Its status if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            SqsServer::Moto(m) => m.service().exited(),
            SqsServer::LocalStack(l) => l.service.exited(),
        }
    }

    /// Leaves the server running; [`sweep`](crate::sweep) stops it later.
    pub fn detach(self) {
        match self {
            SqsServer::Moto(m) => m.detach(),
            SqsServer::LocalStack(l) => {
                l.service.detach();
            }
        }
    }
}

/// LocalStack core serving only SQS on 127.0.0.1, stopped (its whole process group) on drop.
#[derive(Debug)]
pub struct LocalStack {
    port: u16,
    service: Service,
}

impl LocalStack {
    /// Starts LocalStack on `port` with its files in `state/localstack-PORT`, and waits until
    /// its health check shows SQS running.
    ///
    /// The settings are the ones measured in `LOCAL-AWS.md`: SQS only and loaded eagerly, path
    /// queue URLs, no event or analytics traffic (their endpoints point at a closed local port),
    /// no DNS server, the certificate made beforehand.
    pub fn start_on(port: u16, state: &Path) -> Result<LocalStack> {
        let venv = localstack_venv();
        let python = venv.join("bin/python");
        let cert = localstack_cert(&venv);
        if !python.exists() || !cert.exists() {
            bail!(
                "LocalStack is not installed in {}: run `cargo xtask up --sqs localstack` once \
                 (or `cargo xtask test`) to install it",
                venv.display()
            );
        }
        if port_open(port) {
            bail!("port {port} is already in use; choose another");
        }
        let dir = state.join(format!("localstack-{port}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("config"))?;
        fs::create_dir_all(dir.join("fs"))?;
        let listen = format!("127.0.0.1:{port}");
        // A port that was free a moment ago: nothing answers there, so the calls home fail fast.
        let closed = format!("http://127.0.0.1:{}", free_port()?);
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "localstack.runtime.main"])
            .env("GATEWAY_LISTEN", &listen)
            .env("LOCALSTACK_HOST", &listen)
            .env("SERVICES", "sqs")
            .env("EAGER_SERVICE_LOADING", "1")
            .env("SQS_ENDPOINT_STRATEGY", "path")
            .env("DISABLE_EVENTS", "1")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("DNS_ADDRESS", "0")
            .env("API_ENDPOINT", &closed)
            .env("ANALYTICS_API", &closed)
            .env("CUSTOM_SSL_CERT_PATH", &cert)
            .env("FILESYSTEM_ROOT", dir.join("fs"))
            .env("CONFIG_DIR", dir.join("config"))
            .env("PYTHONUNBUFFERED", "1");
        let log = run_dir().join(format!("localstack-{port}.log"));
        let _ = fs::remove_file(&log);
        let mut service = Service::spawn("localstack", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, body)) = http_get(port, "/_localstack/health") {
                if sqs_running(&body) {
                    break;
                }
            }
            if let Some(status) = service.exited() {
                bail!("LocalStack exited ({status}): {}", service.log_tail(20));
            }
            if Instant::now() > deadline {
                bail!(
                    "LocalStack did not show sqs running in 60 s: {}",
                    service.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(LocalStack { port, service })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, the endpoint for the SQS client.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn service(&mut self) -> &mut Service {
        &mut self.service
    }
}

/// Does a `/_localstack/health` body say `"sqs": "running"`?
fn sqs_running(body: &str) -> bool {
    // The body may come chunked: read the JSON object between the first `{` and the last `}`.
    let (Some(a), Some(b)) = (body.find('{'), body.rfind('}')) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&body[a..=b])
        .ok()
        .is_some_and(|v| v["services"]["sqs"] == "running")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print_and_others_are_refused() {
        for kind in [SqsKind::Moto, SqsKind::LocalStack] {
            assert_eq!(kind.as_str().parse::<SqsKind>(), Ok(kind));
        }
        assert_eq!(SqsKind::default(), SqsKind::Moto);
        let err = "elasticmq".parse::<SqsKind>().expect_err("not a server");
        assert_eq!(
            err.to_string(),
            "unknown local SQS `elasticmq` (known: moto, localstack)"
        );
        assert!("Moto".parse::<SqsKind>().is_err(), "names are exact");
    }

    #[test]
    fn health_bodies() {
        let running = r#"{"services": {"sqs": "running"}, "edition": "community"}"#;
        assert!(sqs_running(running));
        assert!(sqs_running(&format!("4a\r\n{running}\r\n0\r\n\r\n")));
        assert!(!sqs_running(r#"{"services": {"sqs": "available"}}"#));
        assert!(!sqs_running("not json"));
    }
}
