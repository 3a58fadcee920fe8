//! `spillway-worker-build [--profile NAME | --release | --dev] [--no-default-features]
//! [--features LIST] [--keep-names] [--max-gzip BYTES] [CRATE_DIR]`: builds a workers-rs crate
//! into `CRATE_DIR/build/` (`index.js`, `index_bg.wasm`, `package.json`, `worker/shim.mjs`), the
//! files `worker-build` 0.8.7 writes, so that `wrangler.toml`'s `[build]` command needs no
//! `cargo install worker-build wasm-bindgen-cli` (about seven minutes on two cores, most of them
//! in crates this tool does not need: HTTP clients, archive formats, a test runner).
//!
//! The steps, as worker-build runs them for `--target module` with panic recovery: `cargo build
//! --lib` for wasm32, with the cargo features asked for (`--features`, `--no-default-features`:
//! one deployable Worker per buffer, each carrying only its own SDK); the bindings from the
//! `wasm-bindgen-cli-support` library (the CLI's own code, pinned to the `wasm-bindgen` of
//! Cargo.lock) with the reset-state function and the abort handler; `wasm-opt -O`; the shim
//! (`module.rs`) bundled by esbuild. wasm-opt and esbuild are the npm packages: `WASM_OPT_BIN`
//! and `ESBUILD_BIN`, else `wasm-opt` and `esbuild` on `PATH` (`npx`, `cargo xtask` and wrangler
//! put `node_modules/.bin` there). It downloads nothing.
//!
//! One difference from worker-build, for size: an optimised build leaves the functions' names
//! out of the wasm and writes them to `build/index_bg.symbols` instead ([`Names`]; about 100 KB
//! of gzip, a sixth of the Worker); `--keep-names` keeps them in. It prints the wasm's compressed
//! size, and with `--max-gzip BYTES` fails over that budget, leaving the previous build in place
//! (`size.rs`).
//!
//! Not supported (worker-build options this project does not use): `[package.metadata.wasm-pack]`,
//! `--panic-unwind`, `--emscripten`, `--no-panic-recovery`/`CUSTOM_SHIM`, `RUN_TO_COMPLETION`,
//! `COREDUMP`, TypeScript output; each is refused rather than ignored.

mod module;
mod opt;
mod size;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use wasm_bindgen_cli_support::Bindgen;

use opt::{wasm_opt, Names};

/// The `wasm-bindgen` version the library is pinned to (Cargo.toml); the crate being built must
/// use the same (its Cargo.lock), which the test `bindgen_matches_the_lock` keeps true here.
const BINDGEN_VERSION: &str = "0.2.130";

/// The symbol map of an optimised build, next to the wasm in `build/` ([`Names::Map`]). Not
/// uploaded: wrangler bundles what `entry.mjs` imports, and nothing imports it.
const SYMBOLS: &str = "index_bg.symbols";

/// Which cargo profile, and the folder under `target/wasm32-unknown-unknown/` it writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Profile {
    Dev,
    Release,
    Custom(String),
}

impl Profile {
    fn cargo_args(&self) -> Vec<String> {
        match self {
            Profile::Dev => vec![],
            Profile::Release => vec!["--release".into()],
            Profile::Custom(name) => vec!["--profile".into(), name.clone()],
        }
    }

    fn dir(&self) -> &str {
        match self {
            Profile::Dev => "debug",
            Profile::Release => "release",
            Profile::Custom(name) => name,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Args {
    profile: Profile,
    /// Cargo's `--features`: every list given, in order (cargo takes them space- or
    /// comma-separated; the tool passes each on unchanged).
    features: Vec<String>,
    /// Cargo's `--no-default-features`.
    no_default_features: bool,
    /// `--keep-names`: the optimised wasm keeps its name section ([`Names`]).
    keep_names: bool,
    /// `--max-gzip BYTES`: the build fails, leaving the previous one in place, when the wasm's
    /// compressed size is over it ([`size`]).
    max_gzip: Option<u64>,
    crate_dir: PathBuf,
}

impl Args {
    /// The feature selection as cargo's own options; none when neither was given, so the
    /// default build's command line stays what it was (`cargo xtask` runs the same compile
    /// ahead of the tool and must match it to find the wasm up to date).
    fn feature_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.no_default_features {
            out.push("--no-default-features".into());
        }
        for list in &self.features {
            out.push("--features".into());
            out.push(list.clone());
        }
        out
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args> {
    let mut profile = Profile::Release;
    let mut features = Vec::new();
    let mut no_default_features = false;
    let mut keep_names = false;
    let mut max_gzip = None;
    let mut crate_dir = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--release" => profile = Profile::Release,
            "--dev" | "--debug" => profile = Profile::Dev,
            "--profile" => {
                let name = it.next().context("--profile needs a name")?;
                profile = match name.as_str() {
                    "dev" => Profile::Dev,
                    "release" => Profile::Release,
                    _ => Profile::Custom(name),
                };
            }
            "--features" | "-F" => {
                let list = it
                    .next()
                    .with_context(|| format!("{a} needs a feature list"))?;
                features.push(feature_list(&list)?);
            }
            "--no-default-features" => no_default_features = true,
            "--keep-names" => keep_names = true,
            "--max-gzip" => {
                let n = it.next().context("--max-gzip needs a size in bytes")?;
                let n = n
                    .parse::<u64>()
                    .with_context(|| format!("--max-gzip {n}: a size in bytes"))?;
                max_gzip = Some(n);
            }
            other if other.starts_with("--features=") => {
                features.push(feature_list(&other["--features=".len()..])?);
            }
            other if other.starts_with('-') => bail!(
                "unknown option {other} (known: --profile NAME, --release, --dev, \
                 --features LIST, --no-default-features, --keep-names, --max-gzip BYTES)"
            ),
            _ if crate_dir.is_some() => bail!("one crate directory only, got a second: {a}"),
            _ => crate_dir = Some(PathBuf::from(a)),
        }
    }
    Ok(Args {
        profile,
        features,
        no_default_features,
        keep_names,
        max_gzip,
        crate_dir: crate_dir.unwrap_or_else(|| PathBuf::from(".")),
    })
}

/// A `--features` value: refused when empty or when it would read as an option (`--features
/// --release` is a forgotten list, not a feature named `--release`).
fn feature_list(list: &str) -> Result<String> {
    if list.trim().is_empty() || list.starts_with('-') {
        bail!("--features needs a feature list, got {list:?}");
    }
    Ok(list.to_owned())
}

fn main() {
    let result = parse_args(std::env::args().skip(1)).and_then(|a| build(&a));
    if let Err(e) = result {
        eprintln!("spillway-worker-build: error: {e:#}");
        std::process::exit(1);
    }
}

/// What `cargo metadata` says about the crate being built.
struct Crate {
    package: module::Package,
    /// The library's file stem (`spillway_edge`).
    lib_name: String,
    target_dir: PathBuf,
}

fn build(args: &Args) -> Result<()> {
    for var in ["CUSTOM_SHIM", "RUN_TO_COMPLETION", "COREDUMP"] {
        if std::env::var_os(var).is_some() {
            bail!("{var} is set: a worker-build option this tool does not implement");
        }
    }
    let started = Instant::now();
    let dir = args
        .crate_dir
        .canonicalize()
        .with_context(|| format!("crate directory {}", args.crate_dir.display()))?;
    let krate = metadata(&dir)?;
    let out_dir = dir.join("build");

    let features = args.feature_args();
    if features.is_empty() {
        println!("[1/4] cargo build for wasm32 ({})", args.profile.dir());
    } else {
        println!(
            "[1/4] cargo build for wasm32 ({}, {})",
            args.profile.dir(),
            features.join(" ")
        );
    }
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&dir)
        .args(["build", "--lib", "--target", "wasm32-unknown-unknown"])
        .args(args.profile.cargo_args())
        .args(&features)
        // As worker-build: wasm-bindgen's macro then uses js_sys's futures.
        .env("WASM_BINDGEN_USE_JS_SYS", "1");
    run(&mut cargo)?;
    let wasm = krate
        .target_dir
        .join("wasm32-unknown-unknown")
        .join(args.profile.dir())
        .join(format!("{}.wasm", krate.lib_name));

    // Everything is written to a staging folder and moved into place at the end, so a failed
    // build leaves the previous output whole (wrangler dev may be serving it).
    let staging = dir.join(".build-staging");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    // Build output, never committed (worker-build writes the same).
    fs::write(staging.join(".gitignore"), "*")?;

    println!("[2/4] wasm-bindgen {BINDGEN_VERSION} (library)");
    let t = Instant::now();
    bindgen(&wasm, &staging)?;
    println!("      {:.1} s", t.elapsed().as_secs_f64());
    fs::write(
        staging.join("package.json"),
        module::package_json(&krate.package),
    )?;

    if args.profile != Profile::Dev {
        let names = if args.keep_names {
            println!("[3/4] wasm-opt -O, names kept");
            Names::Keep
        } else {
            println!("[3/4] wasm-opt -O, names to index_bg.symbols");
            Names::Map(staging.join(SYMBOLS))
        };
        let t = Instant::now();
        wasm_opt(&staging.join("index_bg.wasm"), &names)?;
        println!("      {:.1} s", t.elapsed().as_secs_f64());
    } else {
        println!("[3/4] wasm-opt: skipped for the dev profile");
    }

    println!("[4/4] the shim, bundled by esbuild");
    let index = staging.join("index.js");
    let bindings = fs::read_to_string(&index)?;
    fs::write(staging.join("shim.js"), module::shim(&bindings))?;
    esbuild(&staging)?;
    let bundled = fs::read_to_string(&index)?;
    fs::write(&index, module::plain_wasm_import(&bundled))?;
    fs::remove_file(staging.join("shim.js"))?;
    let snippets = staging.join("snippets");
    if snippets.exists() {
        fs::remove_dir_all(&snippets)?;
    }
    fs::create_dir_all(staging.join("worker"))?;
    fs::write(staging.join("worker/shim.mjs"), module::LEGACY_SHIM)?;

    let wasm_out = fs::read(staging.join("index_bg.wasm"))?;
    let gz = size::gzip_size(&wasm_out);
    println!(
        "index_bg.wasm: {} B, {gz} B compressed ({})",
        wasm_out.len(),
        size::SIZE_NOTE
    );
    size::check_budget(gz, args.max_gzip)?;

    let _ = fs::remove_dir_all(&out_dir);
    fs::rename(&staging, &out_dir)
        .with_context(|| format!("moving {} to {}", staging.display(), out_dir.display()))?;
    println!(
        "built {} in {:.1} s",
        out_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn metadata(dir: &Path) -> Result<Crate> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("reading cargo metadata")?;
    let manifest = dir.join("Cargo.toml");
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .with_context(|| format!("{} is not a package of the workspace", manifest.display()))?;
    if !package["metadata"]["wasm-pack"].is_null() {
        bail!("[package.metadata.wasm-pack] is set: this tool only builds with its defaults");
    }
    let lib_name = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .context("the crate has no cdylib library (crate-type = [\"cdylib\", ...])")?
        .replace('-', "_");
    let workspace = PathBuf::from(
        meta["workspace_root"]
            .as_str()
            .context("cargo metadata has no workspace_root")?,
    );
    let lock = fs::read_to_string(workspace.join("Cargo.lock"))
        .context("reading the workspace's Cargo.lock")?;
    match locked_version(&lock, "wasm-bindgen") {
        Some(v) if v == BINDGEN_VERSION => {}
        // The bindings' schema differs between releases: the library would refuse the wasm.
        found => bail!(
            "the crate uses wasm-bindgen {}, this tool is built with {BINDGEN_VERSION}: move the \
             `wasm-bindgen-cli-support` pin in tools/worker-build/Cargo.toml with it",
            found.unwrap_or("(none in Cargo.lock)")
        ),
    }
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Ok(Crate {
        package: module::Package {
            name: text(&package["name"]).context("package name")?,
            version: text(&package["version"]).context("package version")?,
            description: text(&package["description"]),
            license: text(&package["license"]),
        },
        lib_name,
        target_dir: PathBuf::from(
            meta["target_directory"]
                .as_str()
                .context("cargo metadata has no target_directory")?,
        ),
    })
}

/// The version Cargo.lock resolves `name` to (the first entry, if several).
fn locked_version<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == wanted {
            return lines
                .next()?
                .strip_prefix("version = \"")?
                .strip_suffix('"');
        }
    }
    None
}

/// What `wasm-bindgen --target module --out-name index --no-typescript
/// --experimental-reset-state-function --force-enable-abort-handler` does, with worker-build's
/// defaults for every profile (no `--debug`, names demangled, no DWARF), plus the `workers-rs`
/// SDK entry of the `producers` section worker-build adds.
fn bindgen(wasm: &Path, out_dir: &Path) -> Result<()> {
    let mut b = Bindgen::new();
    b.module(true)?;
    b.input_path(wasm)
        .out_name("index")
        .typescript(false)
        .debug(false)
        .demangle(true)
        .keep_debug(false)
        .omit_default_module_path(false)
        .split_linked_modules(false)
        .reset_state_function(true)
        .force_enable_abort_handler(true);
    let mut output = b
        .generate_output()
        .with_context(|| format!("wasm-bindgen on {}", wasm.display()))?;
    output
        .wasm_mut()
        .producers
        .add_sdk("workers-rs", module::WORKERS_RS_VERSION);
    output.emit(out_dir).context("writing the bindings")
}

/// A tool from `VAR`, else `name` on `PATH`.
fn tool(var: &str, name: &str) -> OsString {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| name.into())
}

fn esbuild(dir: &Path) -> Result<()> {
    let mut c = Command::new(tool("ESBUILD_BIN", "esbuild"));
    c.current_dir(dir).args([
        "--external:./index_bg.wasm",
        "--external:cloudflare:*",
        "--format=esm",
        "--bundle",
        "./shim.js",
        "--outfile=index.js",
        "--allow-overwrite",
    ]);
    // worker-build's switch to read the bundle.
    if std::env::var_os("NO_MINIFY").is_none() {
        c.arg("--minify");
    }
    run(&mut c)
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_wrangler_command_line_parses() {
        assert_eq!(
            args(&["--profile", "worker", "edge"]).expect("parses"),
            Args {
                profile: Profile::Custom("worker".into()),
                features: vec![],
                no_default_features: false,
                keep_names: false,
                max_gzip: None,
                crate_dir: "edge".into()
            }
        );
        assert_eq!(
            args(&[]).expect("parses"),
            Args {
                profile: Profile::Release,
                features: vec![],
                no_default_features: false,
                keep_names: false,
                max_gzip: None,
                crate_dir: ".".into()
            }
        );
        assert_eq!(Profile::Custom("worker".into()).dir(), "worker");
        assert_eq!(Profile::Dev.dir(), "debug");
    }

    #[test]
    fn the_kinesis_command_line_parses_and_reaches_cargo() {
        let a = args(&[
            "--profile",
            "worker",
            "--no-default-features",
            "--features",
            "kinesis",
            "edge",
        ])
        .expect("parses");
        assert_eq!(
            a,
            Args {
                profile: Profile::Custom("worker".into()),
                features: vec!["kinesis".into()],
                no_default_features: true,
                keep_names: false,
                max_gzip: None,
                crate_dir: "edge".into()
            }
        );
        assert_eq!(
            a.feature_args(),
            ["--no-default-features", "--features", "kinesis"]
        );
    }

    #[test]
    fn feature_lists_keep_their_order_in_every_spelling() {
        let a = args(&["-F", "a,b", "edge", "--features=c", "--features", "d e"]).expect("parses");
        assert_eq!(a.features, ["a,b", "c", "d e"]);
        assert!(!a.no_default_features);
        assert_eq!(a.crate_dir, PathBuf::from("edge"));
        assert_eq!(
            a.feature_args(),
            ["--features", "a,b", "--features", "c", "--features", "d e"]
        );
    }

    #[test]
    fn without_feature_options_cargo_gets_none() {
        // The default build's cargo command line must stay what `cargo xtask` runs ahead of it.
        let a = args(&["--profile", "worker", "edge"]).expect("parses");
        assert!(a.feature_args().is_empty());
    }

    #[test]
    fn a_missing_feature_list_is_refused() {
        assert!(args(&["--features"]).is_err());
        assert!(args(&["--features", "--release", "edge"]).is_err());
        assert!(args(&["--features="]).is_err());
        assert!(args(&["-F", ""]).is_err());
        assert!(args(&["--all-features"]).is_err());
    }

    #[test]
    fn keep_names_is_an_option() {
        assert!(
            !args(&["--profile", "worker", "edge"])
                .expect("parses")
                .keep_names
        );
        assert!(args(&["--keep-names", "edge"]).expect("parses").keep_names);
    }

    #[test]
    fn max_gzip_takes_a_byte_count() {
        let a = args(&["--profile", "worker", "--max-gzip", "614400", "edge"]).expect("parses");
        assert_eq!(a.max_gzip, Some(614_400));
        assert_eq!(args(&["edge"]).expect("parses").max_gzip, None);
        assert!(args(&["--max-gzip", "600KiB", "edge"]).is_err());
        assert!(args(&["--max-gzip"]).is_err());
    }

    #[test]
    fn unknown_options_are_refused() {
        assert!(args(&["--panic-unwind", "edge"]).is_err());
        assert!(args(&["edge", "other"]).is_err());
        assert!(args(&["--profile"]).is_err());
    }

    #[test]
    fn bindgen_matches_the_lock() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let lock = fs::read_to_string(root.join("Cargo.lock")).expect("Cargo.lock");
        for name in ["wasm-bindgen", "wasm-bindgen-cli-support"] {
            assert_eq!(
                locked_version(&lock, name),
                Some(BINDGEN_VERSION),
                "{name}: the library, the edge's wasm-bindgen and BINDGEN_VERSION move together"
            );
        }
    }

    #[test]
    fn a_locked_version_is_read_from_the_line_after_the_name() {
        let lock = "[[package]]\nname = \"wasm-bindgen-macro\"\nversion = \"9\"\n\n\
                    [[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.1\"\n";
        assert_eq!(locked_version(lock, "wasm-bindgen"), Some("0.2.1"));
        assert_eq!(locked_version(lock, "walrus"), None);
    }
}
