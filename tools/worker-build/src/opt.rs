//! wasm-opt on the bindings' output: its command line (optimisation level, the wasm features
//! workerd runs, what becomes of the functions' names) and the run. It does not pick the
//! binary (`WASM_OPT_BIN` or `PATH`, in `main.rs`); `main.rs` skips it for the dev profile.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::{run, tool};

/// The wasm features worker-build enables for wasm-opt: what workerd's V8 runs.
const WASM_FEATURES: [&str; 7] = [
    "mutable-globals",
    "sign-ext",
    "nontrapping-float-to-int",
    "bulk-memory",
    "multivalue",
    "reference-types",
    "exception-handling",
];

/// What becomes of the functions' names (the wasm `name` section) in an optimised build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    /// Left out of the wasm and written to this file instead, one `index:name` line per
    /// function (binaryen's symbol map). The section is a quarter of the wasm (372 KB raw,
    /// about 100 KB of the gzip size) and nothing at run time reads it: V8 uses it only to name
    /// frames in a stack trace, which then read `wasm-function[N]`: the map's line `N:name`
    /// names it.
    Map(PathBuf),
    /// Kept in the wasm, as worker-build does (`--keep-names`: readable traces in `wrangler
    /// dev` or `wrangler tail`, at that size).
    Keep,
}

/// wasm-opt's command line: `-O` (gzip -9 of the edge: `-Oz` and `-O3` come out 0.2% and 0.6%
/// larger than `-O`, `-O4` crashes binaryen 132 on exception-handling code), the features, then
/// the names. The symbol map pass comes after `-O` (wasm-opt runs passes in command-line order),
/// so its indexes are those of the module written.
fn wasm_opt_args(input: &Path, output: &Path, names: &Names) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![input.into(), "-o".into(), output.into(), "-O".into()];
    a.extend(WASM_FEATURES.iter().map(|f| format!("--enable-{f}").into()));
    match names {
        Names::Keep => a.push("--debuginfo".into()),
        Names::Map(file) => {
            a.push("--symbolmap".into());
            let mut arg = OsString::from("--pass-arg=symbolmap@");
            arg.push(file);
            a.push(arg);
        }
    }
    a
}

pub fn wasm_opt(wasm: &Path, names: &Names) -> Result<()> {
    let tmp = wasm.with_extension("wasm-opt.wasm");
    run(Command::new(tool("WASM_OPT_BIN", "wasm-opt")).args(wasm_opt_args(wasm, &tmp, names)))?;
    if let Names::Map(file) = names {
        // An empty or missing map would only be noticed when a trace needs it.
        let len = fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            bail!("wasm-opt wrote no symbol map to {}", file.display());
        }
    }
    fs::rename(&tmp, wasm)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_to_the_symbol_map_unless_kept() {
        let strs = |a: Vec<OsString>| -> Vec<String> {
            a.into_iter()
                .map(|s| s.into_string().expect("utf-8"))
                .collect()
        };
        let (i, o) = (Path::new("in.wasm"), Path::new("out.wasm"));
        let mapped = strs(wasm_opt_args(i, o, &Names::Map("b/x.symbols".into())));
        assert_eq!(mapped[..4], ["in.wasm", "-o", "out.wasm", "-O"]);
        assert!(!mapped.iter().any(|a| a == "--debuginfo" || a == "-g"));
        // The map is printed after the optimisation passes, so its indexes are the output's.
        let map = mapped.iter().position(|a| a == "--symbolmap").expect("map");
        assert!(map > 3);
        assert_eq!(mapped[map + 1], "--pass-arg=symbolmap@b/x.symbols");
        let kept = strs(wasm_opt_args(i, o, &Names::Keep));
        assert!(kept.iter().any(|a| a == "--debuginfo"));
        assert!(!kept.iter().any(|a| a.contains("symbolmap")));
        for f in WASM_FEATURES {
            let flag = format!("--enable-{f}");
            assert!(mapped.contains(&flag) && kept.contains(&flag), "{flag}");
        }
    }
}
