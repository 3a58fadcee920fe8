//! Makes sure every tool the tests and the local pipeline need is present, installing only what
//! is missing. Each check is one progress line; a second run installs nothing.
//!
//! The Worker's build tool is a crate of the workspace (`tools/worker-build`, built from the
//! wasm-bindgen library Cargo.lock pins), not a `cargo install`: a first run compiles it into
//! the target directory while npm, the Python venv and PostgreSQL install beside it, since
//! those wait on the network and the disk while the compiler keeps both cores busy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use anyhow::{anyhow, bail, Context, Result};

use crate::step::{note, output, root, run, step};

/// The package of the Worker's build tool (the `[build]` command of wrangler.toml runs it).
pub const WORKER_BUILD_PACKAGE: &str = "spillway-worker-build";

/// Where every tool lives once installed.
#[derive(Debug, Clone)]
pub struct Tools {
    pub node_bin: PathBuf,
    pub wasm_opt: PathBuf,
    pub esbuild: PathBuf,
    pub wrangler: PathBuf,
    pub venv_bin: PathBuf,
    pub pg_bin: PathBuf,
}

impl Tools {
    fn locate() -> Self {
        let root = root();
        let node_bin = root.join("node_modules/.bin");
        Tools {
            wasm_opt: node_bin.join("wasm-opt"),
            esbuild: node_bin.join("esbuild"),
            wrangler: node_bin.join("wrangler"),
            venv_bin: root.join(".venv/bin"),
            pg_bin: spillway_support::pg_bin_dir().unwrap_or_default(),
            node_bin,
        }
    }

    /// Sets the variables the Worker's build tool reads (wasm-opt and esbuild from npm) and puts
    /// the project's tools first on `PATH`.
    pub fn apply(&self, cmd: &mut Command) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.node_bin.clone(), self.venv_bin.clone()];
        paths.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(paths) {
            cmd.env("PATH", joined);
        }
        cmd.env("WASM_OPT_BIN", &self.wasm_opt)
            .env("ESBUILD_BIN", &self.esbuild)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("SPILLWAY_PG_BIN", &self.pg_bin)
            .env("SPILLWAY_MOTO_BIN", self.venv_bin.join("moto_server"));
    }
}

/// Checks and installs everything; returns where the tools are.
///
/// The rust targets come first (every build needs them). Then npm, the venv and PostgreSQL
/// install on a second thread while this one compiles the Worker's build tool; both must
/// succeed. Their step lines may interleave; each keeps its own name and timing.
pub fn ensure_all() -> Result<Tools> {
    let root = root();
    step(
        "rust: wasm32 and aarch64-linux targets, clippy, rustfmt",
        || ensure_rust(&root),
    )?;
    let installs = {
        let root = root.clone();
        thread::spawn(move || ensure_installs(&root))
    };
    let built = step("the Worker's build tool (tools/worker-build)", || {
        build_worker_tool(&root)
    });
    let installed = installs
        .join()
        .map_err(|_| anyhow!("the install thread panicked"))?;
    built?;
    installed?;
    Ok(Tools::locate())
}

/// npm packages, the Python venv, PostgreSQL, chromium: one after the other (apt and pip both may need
/// the network; nothing here competes for the CPU with the compiler).
fn ensure_installs(root: &Path) -> Result<()> {
    step(
        "npm packages: wrangler, binaryen (wasm-opt), esbuild, kinesis-local, the SDKs",
        || ensure_npm(root),
    )?;
    step(
        "python venv .venv: moto (local SQS), cfn-lint, cargo-lambda",
        || ensure_venv(root),
    )?;
    step("PostgreSQL server binaries", ensure_postgres)?;
    step(
        "chromium (headless, for the browser SDK tests)",
        ensure_chromium,
    )
}

/// Debian's `chromium`, run headless by tests/e2e/tests/browser_sdks.rs: skipped when a
/// `chromium` is on the `PATH`. On a fresh machine `apt-get install chromium` downloads about
/// 100 MB and installs about 350 MB (the browser and its libraries), once.
fn ensure_chromium() -> Result<()> {
    let found = ["chromium", "chromium-browser"]
        .into_iter()
        .find_map(|name| output(Command::new(name).arg("--version")));
    if let Some(version) = found {
        note(&format!("present ({})", version.trim()));
        return Ok(());
    }
    apt_install(&["chromium"])
}

/// The Worker build of the crate in `dir` (relative to the root) with the workspace's build
/// tool, as wrangler.toml's `[build]` command runs it for `edge`.
pub fn worker_build(dir: &str) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root())
        .args(["run", "--quiet", "-p", WORKER_BUILD_PACKAGE, "--"]);
    c.args(["--profile", "worker", dir]);
    c
}

/// `cargo build -p spillway-worker-build`: a no-op once built. What the `[build]` command's
/// `cargo run` then finds ready.
fn build_worker_tool(root: &Path) -> Result<()> {
    run(Command::new("cargo").current_dir(root).args([
        "build",
        "--quiet",
        "-p",
        WORKER_BUILD_PACKAGE,
    ]))
}

fn ensure_rust(root: &Path) -> Result<()> {
    let installed =
        output(
            Command::new("rustup")
                .current_dir(root)
                .args(["target", "list", "--installed"]),
        )
        .ok_or_else(|| anyhow!("rustup is required (https://rustup.rs)"))?;
    // wasm32 for the worker; aarch64 Linux for the Lambda binary (arm64, `cargo lambda`).
    for target in ["wasm32-unknown-unknown", "aarch64-unknown-linux-gnu"] {
        if installed.lines().any(|l| l.trim() == target) {
            note(&format!("{target} present"));
        } else {
            note(&format!("installing: rustup target add {target}"));
            run(Command::new("rustup")
                .current_dir(root)
                .args(["target", "add", target]))?;
        }
    }
    let components =
        output(
            Command::new("rustup")
                .current_dir(root)
                .args(["component", "list", "--installed"]),
        )
        .unwrap_or_default();
    for c in ["clippy", "rustfmt"] {
        if components.lines().any(|l| l.starts_with(c)) {
            note(&format!("{c} present"));
        } else {
            note(&format!("installing: rustup component add {c}"));
            run(Command::new("rustup")
                .current_dir(root)
                .args(["component", "add", c]))?;
        }
    }
    Ok(())
}

fn ensure_npm(root: &Path) -> Result<()> {
    let node = output(Command::new("node").arg("--version"))
        .ok_or_else(|| anyhow!("Node.js 20 or newer is required (node not found)"))?;
    let major: u32 = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        bail!("Node.js 20 or newer is required, found {node}");
    }
    let lock = fs::read(root.join("package-lock.json")).context("reading package-lock.json")?;
    let stamp = root.join("node_modules/.spillway-stamp");
    let tools = Tools::locate();
    // kinesis-local (the local Kinesis of `--buffer kinesis`) is plain JS run by node: no
    // postinstall, 8.8 MB, so it comes with every `npm ci` rather than on first use.
    let kinesis = spillway_support::kinesis_server::kinesis_local_main();
    let complete = [&tools.wrangler, &tools.wasm_opt, &tools.esbuild, &kinesis]
        .iter()
        .all(|p| p.exists());
    if complete && fs::read(&stamp).ok().as_deref() == Some(&lock[..]) {
        note(&format!("present (node {node})"));
        return Ok(());
    }
    note("installing: npm ci");
    run(Command::new("npm")
        .current_dir(root)
        .args(["ci", "--no-audit", "--no-fund"]))?;
    fs::write(&stamp, &lock)?;
    Ok(())
}

fn ensure_venv(root: &Path) -> Result<()> {
    let reqs =
        fs::read(root.join("requirements-dev.txt")).context("reading requirements-dev.txt")?;
    let venv = root.join(".venv");
    let stamp = venv.join(".spillway-stamp");
    if venv.join("bin/moto_server").exists() && fs::read(&stamp).ok().as_deref() == Some(&reqs[..])
    {
        note("present");
        return Ok(());
    }
    if !venv.join("bin/pip").exists() {
        note("creating: python3 -m venv .venv");
        let made = Command::new("python3")
            .current_dir(root)
            .args(["-m", "venv", ".venv"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !made {
            // Debian's python3 ships venv separately.
            apt_install(&["python3-venv"])?;
            let _ = fs::remove_dir_all(&venv);
            run(Command::new("python3")
                .current_dir(root)
                .args(["-m", "venv", ".venv"]))?;
        }
    }
    note("installing: pip install -r requirements-dev.txt");
    run(Command::new(venv.join("bin/pip")).current_dir(root).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
        "requirements-dev.txt",
    ]))?;
    fs::write(&stamp, &reqs)?;
    Ok(())
}

/// Installs LocalStack (`requirements-localstack.txt`) into its own venv, `.venv-localstack`,
/// and makes the self-signed certificate it is given. Skipped when the venv's stamp matches the
/// requirements and the certificate is there.
pub fn ensure_localstack() -> Result<()> {
    step(
        "python venv .venv-localstack: LocalStack (the fast local SQS)",
        || install_localstack(&root()),
    )
}

/// [`ensure_localstack`] where Python 3.13 is there; without it, says so and returns false
/// (`cargo xtask test` then skips the LocalStack test instead of failing on a machine that only
/// has the Python 3 the prerequisites ask for).
pub fn ensure_localstack_if_possible() -> Result<bool> {
    if !spillway_support::sqs_server::localstack_venv()
        .join("bin/python")
        .exists()
    {
        if let Err(e) = python313() {
            note(&format!(
                "LocalStack not installed, its test will skip: {e}"
            ));
            return Ok(false);
        }
    }
    ensure_localstack()?;
    Ok(true)
}

fn install_localstack(root: &Path) -> Result<()> {
    let reqs = fs::read(root.join("requirements-localstack.txt"))
        .context("reading requirements-localstack.txt")?;
    let venv = spillway_support::sqs_server::localstack_venv();
    let python = venv.join("bin/python");
    let cert = spillway_support::sqs_server::localstack_cert(&venv);
    let stamp = venv.join(".spillway-stamp");
    if python.exists() && cert.exists() && fs::read(&stamp).ok().as_deref() == Some(&reqs[..]) {
        note("present");
        return Ok(());
    }
    if !python.exists() {
        let base = python313()?;
        note(&format!(
            "creating: {} -m venv {}",
            base.display(),
            venv.display()
        ));
        let _ = fs::remove_dir_all(&venv);
        run(Command::new(&base).arg("-m").arg("venv").arg(&venv))?;
    }
    // The stamp goes last: an interrupted install is redone on the next run.
    let _ = fs::remove_file(&stamp);
    note("installing: pip install -r requirements-localstack.txt (about a minute once)");
    run(Command::new(venv.join("bin/pip")).current_dir(root).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
        "requirements-localstack.txt",
    ]))?;
    note("making its self-signed certificate");
    make_cert(&python, &cert)?;
    fs::write(&stamp, &reqs)?;
    Ok(())
}

/// Python 3.13, which this LocalStack release needs: pyenv's (`$PYENV_ROOT` or `~/.pyenv`),
/// else `python3.13` on `PATH`, else `python3` if it is 3.13.
fn python313() -> Result<PathBuf> {
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    let mut candidates = Vec::new();
    if let Some(versions) = pyenv.map(|p| p.join("versions")) {
        let mut found: Vec<PathBuf> = fs::read_dir(versions)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("3.13"))
            .map(|e| e.path().join("bin/python3.13"))
            .collect();
        // Newest patch release first.
        found.sort();
        candidates.extend(found.into_iter().rev());
    }
    candidates.push(PathBuf::from("python3.13"));
    candidates.push(PathBuf::from("python3"));
    for c in candidates {
        let version = output(
            Command::new(&c).args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]),
        );
        if version.as_deref() == Some("3.13") {
            return Ok(c);
        }
    }
    bail!(
        "LocalStack needs Python 3.13 (3.12 fails at start), and none was found (looked in \
         ~/.pyenv/versions/3.13*, then for python3.13 and python3 on PATH); install it, e.g. \
         `pyenv install 3.13`, or use the default local SQS (`--sqs moto`)"
    )
}

/// Writes a self-signed certificate and its key, PEM, for 127.0.0.1 and localhost, with the
/// `cryptography` package LocalStack brings (no `openssl` binary needed).
fn make_cert(python: &Path, cert: &Path) -> Result<()> {
    const SCRIPT: &str = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost.localstack.cloud")])
now = datetime.datetime.now(datetime.timezone.utc)
san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
    x509.DNSName("localhost.localstack.cloud"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
    .not_valid_after(now + datetime.timedelta(days=3650)).add_extension(san, critical=False)
    .sign(key, hashes.SHA256()))
with open(sys.argv[1], "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    f.write(cert.public_bytes(serialization.Encoding.PEM))
"#;
    run(Command::new(python).args(["-c", SCRIPT]).arg(cert))
}

fn ensure_postgres() -> Result<()> {
    if let Ok(bin) = spillway_support::pg_bin_dir() {
        note(&format!("present ({})", bin.display()));
        return Ok(());
    }
    apt_install(&["postgresql"])?;
    spillway_support::pg_bin_dir().map(|_| ())
}

pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    let root_user = output(Command::new("id").arg("-u")).as_deref() == Some("0");
    if !root_user {
        bail!(
            "missing system packages; install them and run again:\n    sudo apt-get install -y {}",
            packages.join(" ")
        );
    }
    note(&format!(
        "installing: apt-get install -y {}",
        packages.join(" ")
    ));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
