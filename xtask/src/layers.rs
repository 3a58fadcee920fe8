//! The module graph of a crate's sources, and the check that it has no cycle: a module may use
//! only modules that do not use it back, directly or through others (CONVENTIONS.md, "Layers").
//!
//! It reads the files the way rustc finds them (`mod x;` -> `x.rs` or `x/mod.rs`), with `syn`,
//! and counts as a use every path that names another module of the crate: `use` items, and paths
//! in code that start with `crate`, `super`, `self`, a child module or a name a `use` brought in.
//! A path that names an item a module re-exports (`pub use a::B`) counts as a use of the module
//! that defines it, and a module re-exporting its own children is structure, not a use.
//!
//! Test code is left out (`#[cfg(test)]` modules and any module whose `cfg` mentions `test`, such
//! as a testkit): tests may reach everything. It does not expand macros or resolve glob imports
//! beyond the module they name, which is enough for a crate that follows the conventions.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Item, UseTree, Visibility};

/// The library crates whose module graphs must have no cycle, by their root file.
pub const CRATES: [&str; 3] = [
    "shared/src/lib.rs",
    "edge/src/lib.rs",
    "consumer/src/lib.rs",
];

/// `cargo xtask layers`: prints each crate's modules bottom-up, and fails naming every cycle.
pub fn main(_args: &[String]) -> Result<()> {
    let root = spillway_support::repo_root();
    let mut failed = Vec::new();
    for lib in CRATES {
        let graph = Graph::load(&root.join(lib))?;
        println!("{lib}, bottom-up: {}", graph.bottom_up().join(", "));
        for cycle in graph.cycles() {
            failed.push(format!("{lib}: {cycle}"));
        }
    }
    if !failed.is_empty() {
        bail!(
            "modules that use each other (directly or through others):\n  {}",
            failed.join("\n  ")
        );
    }
    println!("no module cycles in {}", CRATES.join(", "));
    Ok(())
}

/// One module: its path from the crate root (empty for the root) and the file it lives in.
struct Module {
    path: Vec<String>,
    file: PathBuf,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    /// Names this module brings in with `use`, as absolute-or-relative paths to resolve.
    imports: BTreeMap<String, Vec<String>>,
    /// The subset of `imports` that other modules can name through this one.
    reexports: BTreeMap<String, Vec<String>>,
    /// The items this module holds, other than its child modules (read after all modules load).
    items: Vec<Item>,
}

/// The crate's modules and which uses which.
pub struct Graph {
    modules: Vec<Module>,
    /// `edges[a]` holds `b` when module `a` uses module `b`.
    edges: Vec<BTreeSet<usize>>,
}

impl Graph {
    /// Reads the crate whose root file is `lib` (e.g. `edge/src/lib.rs`).
    pub fn load(lib: &Path) -> Result<Graph> {
        let mut modules = Vec::new();
        load_module(&mut modules, Vec::new(), lib, None, read_items(lib)?, true)?;
        let mut graph = Graph {
            edges: vec![BTreeSet::new(); modules.len()],
            modules,
        };
        for m in 0..graph.modules.len() {
            let items = std::mem::take(&mut graph.modules[m].items);
            for item in &items {
                graph.add_uses(m, item);
            }
            graph.modules[m].items = items;
        }
        Ok(graph)
    }

    /// The name of module `m` as the crate spells it (`crate::a::b`).
    fn name(&self, m: usize) -> String {
        std::iter::once("crate".to_owned())
            .chain(self.modules[m].path.iter().cloned())
            .collect::<Vec<_>>()
            .join("::")
    }

    /// Every module that is part of a cycle, as groups of modules that reach each other; each
    /// group lists its members and the uses between them. Empty when the graph has no cycle.
    pub fn cycles(&self) -> Vec<String> {
        strongly_connected(&self.edges)
            .into_iter()
            .filter(|group| group.len() > 1)
            .map(|group| {
                let members: BTreeSet<usize> = group.iter().copied().collect();
                let uses: Vec<String> = group
                    .iter()
                    .flat_map(|&a| {
                        self.edges[a]
                            .iter()
                            .filter(|b| members.contains(b))
                            .map(move |&b| (a, b))
                    })
                    .map(|(a, b)| format!("{} -> {}", self.name(a), self.name(b)))
                    .collect();
                uses.join(", ")
            })
            .collect()
    }

    /// The modules bottom-up: each one after every module it uses (cycles, if any, adjacent).
    pub fn bottom_up(&self) -> Vec<String> {
        let mut order = Vec::new();
        let mut seen = vec![false; self.modules.len()];
        fn visit(g: &Graph, m: usize, seen: &mut [bool], order: &mut Vec<usize>) {
            if std::mem::replace(&mut seen[m], true) {
                return;
            }
            for &b in &g.edges[m] {
                visit(g, b, seen, order);
            }
            order.push(m);
        }
        for m in 0..self.modules.len() {
            visit(self, m, &mut seen, &mut order);
        }
        order.into_iter().map(|m| self.name(m)).collect()
    }

    /// What module `from` uses, by name.
    #[cfg(test)]
    fn uses_of(&self, from: &str) -> Vec<String> {
        (0..self.modules.len())
            .find(|&m| self.name(m) == from)
            .map(|m| self.edges[m].iter().map(|&b| self.name(b)).collect())
            .unwrap_or_default()
    }

    fn add_uses(&mut self, m: usize, item: &Item) {
        match item {
            Item::Mod(_) => {}
            Item::Use(u) => {
                let reexport = !matches!(u.vis, Visibility::Inherited);
                let mut paths = Vec::new();
                flatten_use(&u.tree, &mut Vec::new(), &mut paths);
                for (path, _) in paths {
                    if let Some(target) = self.resolve(m, &path, 0) {
                        // A facade re-exporting its own descendants is not a use of them.
                        if reexport && self.is_descendant(target, m) {
                            continue;
                        }
                        self.add_edge(m, target);
                    }
                }
            }
            other => {
                let mut paths = Vec::new();
                scan_paths(other.to_token_stream(), &mut paths);
                for path in paths {
                    if let Some(target) = self.resolve(m, &path, 0) {
                        self.add_edge(m, target);
                    }
                }
            }
        }
    }

    fn add_edge(&mut self, from: usize, to: usize) {
        if from != to {
            self.edges[from].insert(to);
        }
    }

    fn is_descendant(&self, mut m: usize, ancestor: usize) -> bool {
        while let Some(p) = self.modules[m].parent {
            if p == ancestor {
                return true;
            }
            m = p;
        }
        false
    }

    /// The module a path written in module `m` names (the module itself, or the one defining
    /// the item it names), or `None` for paths outside the crate.
    fn resolve(&self, m: usize, path: &[String], depth: usize) -> Option<usize> {
        if depth > 16 {
            return None;
        }
        let (first, rest) = path.split_first()?;
        let mut at = match first.as_str() {
            "crate" => 0,
            "self" => m,
            "super" => self.modules[m].parent?,
            name => {
                if let Some(&child) = self.modules[m].children.get(name) {
                    child
                } else if let Some(imported) = self.modules[m].imports.get(name) {
                    let mut full = imported.clone();
                    full.extend(rest.iter().cloned());
                    return self.resolve(m, &full, depth + 1);
                } else {
                    return None;
                }
            }
        };
        for (i, seg) in rest.iter().enumerate() {
            if seg == "super" {
                at = self.modules[at].parent?;
            } else if seg == "self" {
                continue;
            } else if let Some(&child) = self.modules[at].children.get(seg) {
                at = child;
            } else if let Some(target) = self.modules[at].reexports.get(seg) {
                let mut full = target.clone();
                full.extend(rest[i + 1..].iter().cloned());
                return self.resolve(at, &full, depth + 1).or(Some(at));
            } else {
                break;
            }
        }
        Some(at)
    }
}

/// Whether `attrs` hold a `cfg` that mentions `test` (test-only code).
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .to_token_stream()
                .into_iter()
                .any(|t| mentions_test(&t))
    })
}

fn mentions_test(t: &TokenTree) -> bool {
    match t {
        TokenTree::Ident(i) => i == "test",
        TokenTree::Group(g) => g.stream().into_iter().any(|t| mentions_test(&t)),
        _ => false,
    }
}

fn read_items(file: &Path) -> Result<Vec<Item>> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(syn::parse_file(&text)
        .with_context(|| format!("parsing {}", file.display()))?
        .items)
}

/// Adds the module at `path` (its items already read) and, recursively, its children.
/// `owns_dir` is true for `lib.rs` and `mod.rs`, whose children sit beside them.
fn load_module(
    modules: &mut Vec<Module>,
    path: Vec<String>,
    file: &Path,
    parent: Option<usize>,
    items: Vec<Item>,
    owns_dir: bool,
) -> Result<usize> {
    let me = modules.len();
    modules.push(Module {
        path: path.clone(),
        file: file.to_owned(),
        parent,
        children: BTreeMap::new(),
        imports: BTreeMap::new(),
        reexports: BTreeMap::new(),
        items: Vec::new(),
    });
    let dir = if owns_dir {
        file.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        file.with_extension("")
    };
    let mut kept = Vec::new();
    for item in items {
        match item {
            Item::Mod(ref md) if test_only(&md.attrs) => {}
            Item::Mod(md) => {
                let name = md.ident.to_string();
                let mut child_path = path.clone();
                child_path.push(name.clone());
                let child = match md.content {
                    Some((_, inner)) => {
                        // Inline: its children would live in `dir/name/`.
                        let pseudo = dir.join(&name).join("mod.rs");
                        let id = load_module(modules, child_path, &pseudo, Some(me), inner, true)?;
                        modules[id].file = file.to_owned();
                        id
                    }
                    None => {
                        if md.attrs.iter().any(|a| a.path().is_ident("path")) {
                            bail!(
                                "{}: `#[path]` on mod {name} is not supported here",
                                file.display()
                            );
                        }
                        let flat = dir.join(format!("{name}.rs"));
                        let nested = dir.join(&name).join("mod.rs");
                        let (child_file, owns) = if flat.is_file() {
                            (flat, false)
                        } else if nested.is_file() {
                            (nested, true)
                        } else {
                            bail!("{}: no file for mod {name}", file.display());
                        };
                        let inner = read_items(&child_file)?;
                        load_module(modules, child_path, &child_file, Some(me), inner, owns)?
                    }
                };
                modules[me].children.insert(name, child);
            }
            Item::Use(ref u) => {
                let mut paths = Vec::new();
                flatten_use(&u.tree, &mut Vec::new(), &mut paths);
                let public = !matches!(u.vis, Visibility::Inherited);
                for (p, name) in paths {
                    if let Some(name) = name {
                        if public {
                            modules[me].reexports.insert(name.clone(), p.clone());
                        }
                        modules[me].imports.insert(name, p);
                    }
                }
                kept.push(item);
            }
            other => {
                if !item_is_test_only(&other) {
                    kept.push(other);
                }
            }
        }
    }
    modules[me].items = kept;
    Ok(me)
}

fn item_is_test_only(item: &Item) -> bool {
    match item {
        Item::Fn(f) => test_only(&f.attrs),
        Item::Impl(i) => test_only(&i.attrs),
        Item::Struct(s) => test_only(&s.attrs),
        Item::Enum(e) => test_only(&e.attrs),
        Item::Const(c) => test_only(&c.attrs),
        Item::Static(s) => test_only(&s.attrs),
        Item::Trait(t) => test_only(&t.attrs),
        _ => false,
    }
}

/// Each path a `use` tree names, with the local name it binds (`None` for globs).
fn flatten_use(
    tree: &UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                out.push((prefix.clone(), prefix.last().cloned()));
            } else {
                let mut p = prefix.clone();
                p.push(name.clone());
                out.push((p, Some(name)));
            }
        }
        UseTree::Rename(r) => {
            let mut p = prefix.clone();
            if r.ident != "self" {
                p.push(r.ident.to_string());
            }
            out.push((p, Some(r.rename.to_string())));
        }
        UseTree::Glob(_) => out.push((prefix.clone(), None)),
        UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix, out);
            }
        }
    }
}

/// Every path of two or more segments (`a::b`, `crate::a::B`) in `tokens`, as written.
fn scan_paths(tokens: TokenStream, out: &mut Vec<Vec<String>>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Group(g) => {
                scan_paths(g.stream(), out);
                i += 1;
            }
            TokenTree::Ident(first) if !preceded_by_colons(&trees, i) => {
                let mut path = vec![first.to_string()];
                let mut j = i + 1;
                while let (
                    Some(TokenTree::Punct(a)),
                    Some(TokenTree::Punct(b)),
                    Some(TokenTree::Ident(next)),
                ) = (trees.get(j), trees.get(j + 1), trees.get(j + 2))
                {
                    if a.as_char() != ':' || b.as_char() != ':' {
                        break;
                    }
                    path.push(next.to_string());
                    j += 3;
                }
                if path.len() > 1 {
                    out.push(path);
                }
                i = j.max(i + 1);
            }
            _ => i += 1,
        }
    }
}

fn preceded_by_colons(trees: &[TokenTree], i: usize) -> bool {
    i >= 2
        && matches!((&trees[i - 2], &trees[i - 1]),
            (TokenTree::Punct(a), TokenTree::Punct(b)) if a.as_char() == ':' && b.as_char() == ':')
}

/// Kosaraju's strongly connected components of a directed graph given as adjacency sets.
fn strongly_connected(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for start in 0..n {
        if seen[start] {
            continue;
        }
        // Iterative post-order DFS.
        let mut stack = vec![(start, edges[start].iter().copied().collect::<Vec<_>>())];
        seen[start] = true;
        while let Some((node, pending)) = stack.last_mut() {
            if let Some(next) = pending.pop() {
                if !seen[next] {
                    seen[next] = true;
                    let succ = edges[next].iter().copied().collect();
                    stack.push((next, succ));
                }
            } else {
                order.push(*node);
                stack.pop();
            }
        }
    }
    let mut reverse = vec![Vec::new(); n];
    for (a, bs) in edges.iter().enumerate() {
        for &b in bs {
            reverse[b].push(a);
        }
    }
    let mut component = vec![usize::MAX; n];
    let mut groups = Vec::new();
    for &start in order.iter().rev() {
        if component[start] != usize::MAX {
            continue;
        }
        let id = groups.len();
        let mut group = Vec::new();
        let mut stack = vec![start];
        component[start] = id;
        while let Some(node) = stack.pop() {
            group.push(node);
            for &prev in &reverse[node] {
                if component[prev] == usize::MAX {
                    component[prev] = id;
                    stack.push(prev);
                }
            }
        }
        group.sort_unstable();
        groups.push(group);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path, text) under a fresh directory and loads `src/lib.rs` from it.
    fn graph(name: &str, files: &[(&str, &str)]) -> Graph {
        let dir =
            std::env::temp_dir().join(format!("spillway-layers-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
            fs::write(&p, text).expect("write");
        }
        let g = Graph::load(&dir.join("src/lib.rs")).expect("loads");
        let _ = fs::remove_dir_all(&dir);
        g
    }

    #[test]
    fn two_modules_that_use_each_other_are_a_cycle() {
        let g = graph(
            "pair",
            &[
                ("src/lib.rs", "mod a; mod b;"),
                ("src/a.rs", "use crate::b::B; pub struct A;"),
                (
                    "src/b.rs",
                    "pub struct B; fn f() -> crate::a::A { crate::a::A }",
                ),
            ],
        );
        assert_eq!(
            g.cycles(),
            vec!["crate::a -> crate::b, crate::b -> crate::a"]
        );
    }

    #[test]
    fn a_cycle_through_a_third_module_and_a_folder_is_found() {
        let g = graph(
            "three",
            &[
                ("src/lib.rs", "pub mod top; pub mod low;"),
                ("src/top.rs", "pub fn t() { crate::low::deep::d(); }"),
                ("src/low/mod.rs", "pub mod deep; pub mod other;"),
                ("src/low/deep.rs", "pub fn d() { super::other::o(); }"),
                (
                    "src/low/other.rs",
                    "use crate::top; pub fn o() { top::t(); }",
                ),
            ],
        );
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        for m in ["crate::top", "crate::low::deep", "crate::low::other"] {
            assert!(cycles[0].contains(m), "{m} in {cycles:?}");
        }
    }

    #[test]
    fn reexports_resolve_to_their_source_and_a_facade_is_not_a_use() {
        let g = graph(
            "facade",
            &[
                ("src/lib.rs", "pub mod a; pub mod b; pub use a::Thing;"),
                ("src/a/mod.rs", "mod inner; pub use inner::Thing;"),
                ("src/a/inner.rs", "pub struct Thing;"),
                ("src/b.rs", "use crate::Thing; pub fn f(_: Thing) {}"),
            ],
        );
        assert_eq!(g.uses_of("crate::b"), vec!["crate::a::inner"]);
        assert!(g.uses_of("crate").is_empty(), "{:?}", g.uses_of("crate"));
        assert!(g.uses_of("crate::a").is_empty());
        assert!(g.cycles().is_empty());
        let order = g.bottom_up();
        let pos = |m: &str| order.iter().position(|x| x == m).expect("listed");
        assert!(pos("crate::a::inner") < pos("crate::b"));
    }

    #[test]
    fn test_code_and_outside_crates_are_left_out() {
        let g = graph(
            "tests",
            &[
                (
                    "src/lib.rs",
                    "pub mod a; pub mod b; #[cfg(any(test, feature = \"testkit\"))] pub mod kit;",
                ),
                (
                    "src/a.rs",
                    "use std::io::Read; pub fn a() { serde_json::json!(1); }\n\
                     #[cfg(test)] mod tests { use crate::b::b; }",
                ),
                ("src/b.rs", "pub fn b() { crate::a::a(); }"),
                ("src/kit.rs", "use crate::b::b;"),
            ],
        );
        assert!(g.cycles().is_empty(), "{:?}", g.cycles());
        assert_eq!(g.uses_of("crate::b"), vec!["crate::a"]);
        assert!(g.uses_of("crate::a").is_empty());
    }

    /// The project's own library crates: no module uses a module that uses it back.
    #[test]
    fn the_crates_have_no_module_cycle() {
        main(&[]).expect("no cycles");
    }
}
