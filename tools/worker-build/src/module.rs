//! The JavaScript side of a Worker module, as text: the entry shim around wasm-bindgen's
//! `--target module` output (one handler per exported entry point, one proxy per exported
//! class), the `package.json` beside it, and the rewrite esbuild's output needs.
//!
//! Pure string work, tested natively. It does not read files, run esbuild or touch the wasm;
//! `main.rs` does. Each function reproduces the step of the same name in `worker-build` 0.8.7
//! (`src/main.rs`, Apache-2.0), whose output `wrangler.toml`'s `edge/entry.mjs` was written
//! against; the shim template `shim.js` is that release's file, unchanged.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// worker-build 0.8.7's shim for `--target module` without panic=unwind; `$HANDLERS` is
/// replaced by [`handlers`].
const SHIM_TEMPLATE: &str = include_str!("shim.js");

/// The worker-build release whose output this reproduces; written into the wasm's `producers`
/// section as the `workers-rs` SDK, as worker-build does.
pub const WORKERS_RS_VERSION: &str = "0.8.7";

/// wasm-bindgen exports that are plumbing of the shim, not entry points.
const SYSTEM_FNS: &[&str] = &["__wbg_reset_state", "__worker_init_state"];

/// The entry shim (`shim.js`, which esbuild bundles into `index.js`) for the wasm-bindgen
/// module `index_js`.
pub fn shim(index_js: &str) -> String {
    let mut out = SHIM_TEMPLATE.replace("$HANDLERS", &handlers(index_js));
    for class in exported_classes(index_js) {
        out.push_str(&format!(
            "export const {class} = new Proxy(exports.{class}, classProxyHooks);\n"
        ));
    }
    out
}

/// One `Entrypoint.prototype.<name>` per exported function: the event handlers (`fetch`,
/// `queue`, ...) get the entrypoint's `env` and `ctx` as their extra arguments.
fn handlers(index_js: &str) -> String {
    let mut out = String::new();
    for name in exported_functions(index_js) {
        if matches!(name, "fetch" | "queue" | "scheduled" | "email" | "connect") {
            out.push_str(&format!(
                "Entrypoint.prototype.{name} = function {name} (arg) {{\n  return exports.{name}.call(this, arg, this.env, this.ctx);\n}}\n"
            ));
        } else {
            out.push_str(&format!("Entrypoint.prototype.{name} = exports.{name};\n"));
        }
    }
    out
}

/// Names of the functions the module exports (`export function f(`, `export async function
/// f(`, `export { x as f }`), in order, without [`SYSTEM_FNS`].
fn exported_functions(index_js: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for decl in export_decls(index_js) {
        let name = if let Some(rest) = decl
            .strip_prefix("export function")
            .or_else(|| decl.strip_prefix("export async function"))
        {
            rest.find('(').map(|i| rest[..i].trim())
        } else if let Some(rest) = decl.strip_prefix("export {") {
            rest.find(" as ").and_then(|i| {
                let rest = &rest[i + 4..];
                rest.find('}').map(|j| rest[..j].trim())
            })
        } else {
            None
        };
        if let Some(name) = name.filter(|n| !SYSTEM_FNS.contains(n)) {
            names.push(name);
        }
    }
    names
}

/// Names of the classes the module exports (`export class Name {`): the Durable Objects.
fn exported_classes(index_js: &str) -> Vec<&str> {
    export_decls(index_js)
        .filter_map(|decl| decl.strip_prefix("export class "))
        .filter_map(|rest| rest.find('{').map(|i| rest[..i].trim()))
        .collect()
}

/// Each `export` declaration, from its keyword on: an `export ` at the start or after
/// whitespace, `;` or `}` (so one-per-line and minified text both work).
fn export_decls(content: &str) -> impl Iterator<Item = &str> {
    content.match_indices("export ").filter_map(move |(i, _)| {
        let boundary = i == 0
            || content[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_whitespace() || c == ';' || c == '}');
        boundary.then(|| &content[i..])
    })
}

/// esbuild keeps wasm-bindgen's source-phase import (`import source wasm from
/// "./index_bg.wasm"`); workerd wants the plain import of a compiled module.
pub fn plain_wasm_import(bundled_js: &str) -> String {
    bundled_js.replace("import source ", "import ")
}

/// The crate's fields `package.json` carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub license: Option<String>,
}

/// `package.json` of the output directory: keys sorted, two-space indent, no final newline,
/// as worker-build writes it.
pub fn package_json(p: &Package) -> String {
    let mut map: BTreeMap<&str, Value> = BTreeMap::new();
    map.insert("name", json!(p.name));
    map.insert("version", json!(p.version));
    map.insert("type", json!("module"));
    map.insert("files", json!(["index_bg.wasm", "index.js", "index.d.ts"]));
    map.insert("main", json!("index.js"));
    map.insert("sideEffects", json!(["./index.js"]));
    if let Some(d) = &p.description {
        map.insert("description", json!(d));
    }
    if let Some(l) = &p.license {
        map.insert("license", json!(l));
    }
    // A map of strings and arrays of strings always serialises.
    serde_json::to_string_pretty(&map).unwrap_or_default()
}

/// `worker/shim.mjs`: the entry point older wrangler.toml files name, re-exporting `index.js`.
pub const LEGACY_SHIM: &str = "// Use index.js directly, this file provided for backwards compat
// with former shim.mjs only.
export * from '../index.js';
export { default } from '../index.js';
";

#[cfg(test)]
mod tests {
    use super::*;

    const BINDGEN_OUT: &str = "let wasm;\nexport class Batcher {\n  constructor() {}\n}\n\
        export function fetch(req, env, ctx) {}\nexport async function queue(batch, env, ctx) {}\n\
        export function __wbg_reset_state() {}\nexport { f as helper };\n\
        function notexported() {}\nconst s = \"export function inside_a_word\";\n";

    #[test]
    fn entry_points_get_env_and_ctx_other_exports_are_copied_and_plumbing_is_left_out() {
        let h = handlers(BINDGEN_OUT);
        assert_eq!(
            h,
            "Entrypoint.prototype.fetch = function fetch (arg) {\n  return exports.fetch.call(this, arg, this.env, this.ctx);\n}\n\
             Entrypoint.prototype.queue = function queue (arg) {\n  return exports.queue.call(this, arg, this.env, this.ctx);\n}\n\
             Entrypoint.prototype.helper = exports.helper;\n"
        );
    }

    #[test]
    fn an_export_inside_a_word_or_string_is_not_a_declaration() {
        // `"export function inside_a_word"` follows a quote, not a boundary.
        assert_eq!(
            exported_functions(BINDGEN_OUT),
            ["fetch", "queue", "helper"]
        );
    }

    #[test]
    fn minified_exports_are_found_after_semicolons_and_braces() {
        let min = "let a=1;export function fetch(a){}export class Batcher{}";
        assert_eq!(exported_functions(min), ["fetch"]);
        assert_eq!(exported_classes(min), ["Batcher"]);
    }

    #[test]
    fn the_shim_fills_the_template_and_proxies_each_class() {
        let s = shim(BINDGEN_OUT);
        assert!(!s.contains("$HANDLERS"));
        assert!(s.starts_with("import { WorkerEntrypoint } from \"cloudflare:workers\";"));
        assert!(s.contains("Entrypoint.prototype.queue = function queue (arg)"));
        assert!(s.ends_with(
            "export default new Proxy(Entrypoint, classProxyHooks);\n\
             export const Batcher = new Proxy(exports.Batcher, classProxyHooks);\n"
        ));
    }

    #[test]
    fn the_source_phase_import_becomes_a_plain_import() {
        assert_eq!(
            plain_wasm_import("import source m from\"./index_bg.wasm\";x"),
            "import m from\"./index_bg.wasm\";x"
        );
    }

    #[test]
    fn package_json_is_sorted_and_pretty() {
        let p = Package {
            name: "spillway-edge".into(),
            version: "0.1.0".into(),
            description: Some("d".into()),
            license: Some("Apache-2.0".into()),
        };
        assert_eq!(
            package_json(&p),
            "{\n  \"description\": \"d\",\n  \"files\": [\n    \"index_bg.wasm\",\n    \"index.js\",\n    \"index.d.ts\"\n  ],\n  \"license\": \"Apache-2.0\",\n  \"main\": \"index.js\",\n  \"name\": \"spillway-edge\",\n  \"sideEffects\": [\n    \"./index.js\"\n  ],\n  \"type\": \"module\",\n  \"version\": \"0.1.0\"\n}"
        );
    }
}
