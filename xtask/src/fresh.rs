//! Whether a build's output is newer than every input it is built from, so `cargo xtask dev`
//! and `up` can skip the worker build (whose wasm-opt pass alone costs about 27 s) when nothing
//! changed.
//!
//! Times are file modification times, as make and cargo use them. The decision is
//! conservative: a missing or unreadable output, or an input that cannot be read, means
//! "build".

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What the worker build (wrangler.toml's `[build]` command, `tools/worker-build`) reads,
/// relative to the repository: the edge and the schema crate it depends on, the build tool
/// itself (its shim template, its wasm-bindgen), the workspace's manifests and lock file
/// (dependency versions, the `worker` profile and the release profile it inherits), the
/// toolchain pin, the cargo settings and the `[build]` command itself.
pub const WORKER_INPUTS: &[&str] = &[
    "edge/src",
    "edge/Cargo.toml",
    "shared/src",
    "shared/Cargo.toml",
    "tools/worker-build/src",
    "tools/worker-build/Cargo.toml",
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
    ".cargo/config.toml",
    "wrangler.toml",
];

/// What it writes, relative to the repository.
pub const WORKER_OUTPUTS: &[&str] = &[
    "edge/build/index.js",
    "edge/build/index_bg.wasm",
    "edge/build/worker/shim.mjs",
];

/// The same files of the Kinesis build, where `cargo xtask` keeps it
/// (`spillway_support::stack::worker_dir`).
pub const KINESIS_WORKER_OUTPUTS: &[&str] = &[
    "target/worker-kinesis/build/index.js",
    "target/worker-kinesis/build/index_bg.wasm",
    "target/worker-kinesis/build/worker/shim.mjs",
];

/// The verdict, with the reason shown in the step line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Every output is newer than every input.
    UpToDate,
    /// Build, because of this (a path relative to the root, or what is missing).
    Stale(String),
}

/// Compares the oldest output with the newest input under `root`.
pub fn check(root: &Path, inputs: &[&str], outputs: &[&str]) -> Freshness {
    let mut oldest_output: Option<SystemTime> = None;
    for out in outputs {
        match modified(&root.join(out)) {
            Some(t) => oldest_output = Some(oldest_output.map_or(t, |o| o.min(t))),
            None => return Freshness::Stale(format!("{out} is missing")),
        }
    }
    let Some(oldest_output) = oldest_output else {
        return Freshness::Stale("no output to compare".into());
    };
    for input in inputs {
        let path = root.join(input);
        if !path.exists() {
            // An optional input (e.g. no `.cargo/config.toml`) changes nothing.
            continue;
        }
        match newest_under(&path) {
            Err(p) => return Freshness::Stale(format!("cannot read {}", rel(root, &p))),
            Ok(Some((t, p))) if t > oldest_output => {
                return Freshness::Stale(format!("{} changed", rel(root, &p)))
            }
            Ok(_) => {}
        }
    }
    Freshness::UpToDate
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of `path` or of anything below it, and which file has it.
/// Directories count too: removing or renaming a file changes its directory's time.
fn newest_under(path: &Path) -> Result<Option<(SystemTime, PathBuf)>, PathBuf> {
    let meta = fs::metadata(path).map_err(|_| path.to_owned())?;
    let mut newest = Some((
        meta.modified().map_err(|_| path.to_owned())?,
        path.to_owned(),
    ));
    if meta.is_dir() {
        let entries = fs::read_dir(path).map_err(|_| path.to_owned())?;
        for entry in entries {
            let entry = entry.map_err(|_| path.to_owned())?;
            if let Some((t, p)) = newest_under(&entry.path())? {
                if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                    newest = Some((t, p));
                }
            }
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinesis_outputs_are_the_same_files_where_the_stack_serves_them_from() {
        use spillway_support::stack::worker_dir;
        use spillway_support::BufferKind;
        let root = Path::new("/r");
        for (sqs, kinesis) in WORKER_OUTPUTS.iter().zip(KINESIS_WORKER_OUTPUTS) {
            let file = sqs.strip_prefix("edge/").expect("under edge/");
            assert_eq!(
                root.join(kinesis),
                worker_dir(root, BufferKind::Kinesis).join(file)
            );
            assert_eq!(root.join(sqs), worker_dir(root, BufferKind::Sqs).join(file));
        }
        assert_eq!(WORKER_OUTPUTS.len(), KINESIS_WORKER_OUTPUTS.len());
    }
    use std::fs::File;
    use std::time::Duration;

    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Tree {
            let dir =
                std::env::temp_dir().join(format!("xtask-fresh-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("dir");
            Tree(dir)
        }

        /// Writes `rel` with the modification time `secs` after a fixed base.
        fn file(&self, rel: &str, secs: u64) {
            let path = self.0.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("dir");
            }
            fs::write(&path, rel).expect("write");
            self.touch(rel, secs);
        }

        fn touch(&self, rel: &str, secs: u64) {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
            File::options()
                .write(true)
                .open(self.0.join(rel))
                .and_then(|f| f.set_modified(t))
                .or_else(|_| File::open(self.0.join(rel)).and_then(|f| f.set_modified(t)))
                .expect("set mtime");
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const IN: &[&str] = &["src", "Cargo.toml", "absent.toml"];
    const OUT: &[&str] = &["build/a.js", "build/a.wasm"];

    fn tree(name: &str) -> Tree {
        let t = Tree::new(name);
        t.file("src/lib.rs", 10);
        t.file("src/deep/mod.rs", 20);
        t.touch("src/deep", 20);
        t.touch("src", 20);
        t.file("Cargo.toml", 5);
        t.file("build/a.js", 100);
        t.file("build/a.wasm", 101);
        t
    }

    #[test]
    fn outputs_newer_than_every_input_are_up_to_date() {
        let t = tree("fresh");
        assert_eq!(check(&t.0, IN, OUT), Freshness::UpToDate);
    }

    #[test]
    fn a_changed_file_deep_in_an_input_means_build_and_names_it() {
        let t = tree("deep");
        t.touch("src/deep/mod.rs", 150);
        assert_eq!(
            check(&t.0, IN, OUT),
            Freshness::Stale("src/deep/mod.rs changed".into())
        );
    }

    #[test]
    fn the_oldest_output_counts() {
        let t = tree("oldest");
        // Newer than one output, older than the other: the older output is stale.
        t.touch("Cargo.toml", 100);
        t.touch("build/a.js", 99);
        assert_eq!(
            check(&t.0, IN, OUT),
            Freshness::Stale("Cargo.toml changed".into())
        );
    }

    #[test]
    fn a_missing_output_means_build() {
        let t = tree("missing");
        fs::remove_file(t.0.join("build/a.wasm")).expect("rm");
        assert_eq!(
            check(&t.0, IN, OUT),
            Freshness::Stale("build/a.wasm is missing".into())
        );
    }

    #[test]
    fn a_removed_source_file_changes_its_directory() {
        let t = tree("removed");
        fs::remove_file(t.0.join("src/lib.rs")).expect("rm");
        // Removing the file updated `src` itself to "now", after the outputs.
        assert_eq!(check(&t.0, IN, OUT), Freshness::Stale("src changed".into()));
    }
}
