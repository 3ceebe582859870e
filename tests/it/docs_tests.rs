//! The docs name only tests that exist, under the name `cargo test` gives them, so that a name
//! copied from a doc is a filter that runs that test.
//!
//! What counts as naming a test, in README.md and docs/*.md:
//! - a code span that is a Rust path whose first segment is a module of the integration tests
//!   (`tests/it/main.rs`, other than `support`), e.g. `engine_docker::images::pull_errors_name_the_image`:
//!   it must be a test of `cargo test --test it`, or a module holding tests;
//! - a code span that is a Rust path with a `tests` segment, e.g.
//!   `apply::tests::every_failure_point_of_a_replacement_puts_the_old_containers_back`: it
//!   must be a unit test of the library (`cargo test --lib`), or a module holding them;
//! - a path `tests/...rs`, in a code span or not: the file must exist.
//!
//! Other code spans (`apply::up`, `uki::split`, and `render::render`, which the library has
//! although `render` is also a module of the integration tests) name code, not tests, and are
//! not checked here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use syn::Item;

use crate::support::rust_source::{is_test_attr, rust_files};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The module path of a file below `base` (`a/b.rs` and `a/b/mod.rs` are `a::b`; the crate
/// roots `main.rs` and `lib.rs` are the empty path).
fn module_of(file: &Path, base: &Path) -> Vec<String> {
    let relative = file.strip_prefix(base).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "main" | "lib")) {
        parts.pop();
    }
    parts
}

/// Every test under `base` as `cargo test` names it (`module::...::name`), and every module
/// that holds tests.
fn tests_under(base: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(items: &[Item], path: &[String], tests: &mut BTreeSet<String>, modules: &mut BTreeSet<String>) {
        for item in items {
            match item {
                Item::Fn(f) if f.attrs.iter().any(is_test_attr) => {
                    let mut full = path.to_vec();
                    full.push(f.sig.ident.to_string());
                    tests.insert(full.join("::"));
                    for end in 1..=path.len() {
                        modules.insert(path[..end].join("::"));
                    }
                }
                Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        let mut deeper = path.to_vec();
                        deeper.push(m.ident.to_string());
                        walk(inner, &deeper, tests, modules);
                    }
                }
                _ => {}
            }
        }
    }
    let (mut tests, mut modules) = (BTreeSet::new(), BTreeSet::new());
    for file in rust_files(base) {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        walk(&parsed.items, &module_of(&file, base), &mut tests, &mut modules);
    }
    (tests, modules)
}

/// Every named item of the library as `module::...::name` (functions, types, constants,
/// modules, and names a `use` brings in), to tell `render::render` (the library's function)
/// from a test of the `render` module of the integration tests.
fn library_items() -> BTreeSet<String> {
    fn use_names(tree: &syn::UseTree, out: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(p) => use_names(&p.tree, out),
            syn::UseTree::Name(n) => out.push(n.ident.to_string()),
            syn::UseTree::Rename(r) => out.push(r.rename.to_string()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_names(t, out)),
            syn::UseTree::Glob(_) => {}
        }
    }
    fn walk(items: &[Item], path: &[String], out: &mut BTreeSet<String>) {
        for item in items {
            let mut names = Vec::new();
            match item {
                Item::Fn(f) => names.push(f.sig.ident.to_string()),
                Item::Struct(s) => names.push(s.ident.to_string()),
                Item::Enum(e) => names.push(e.ident.to_string()),
                Item::Const(c) => names.push(c.ident.to_string()),
                Item::Static(s) => names.push(s.ident.to_string()),
                Item::Type(t) => names.push(t.ident.to_string()),
                Item::Trait(t) => names.push(t.ident.to_string()),
                Item::Use(u) => use_names(&u.tree, &mut names),
                Item::Mod(m) => {
                    names.push(m.ident.to_string());
                    if let Some((_, inner)) = &m.content {
                        let mut deeper = path.to_vec();
                        deeper.push(m.ident.to_string());
                        walk(inner, &deeper, out);
                    }
                }
                _ => {}
            }
            for name in names {
                let mut full = path.to_vec();
                full.push(name);
                out.insert(full.join("::"));
            }
        }
    }
    let base = root().join("src");
    let mut out = BTreeSet::new();
    for file in rust_files(&base) {
        let parsed = syn::parse_file(&std::fs::read_to_string(&file).unwrap()).unwrap();
        walk(&parsed.items, &module_of(&file, &base), &mut out);
    }
    out
}

/// The integration binary's top-level modules.
fn integration_modules() -> BTreeSet<String> {
    let main = std::fs::read_to_string(root().join("tests/it/main.rs")).unwrap();
    let parsed = syn::parse_file(&main).unwrap();
    parsed
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Mod(m) => Some(m.ident.to_string()),
            _ => None,
        })
        .filter(|m| m != "support")
        .collect()
}

/// The text of every inline code span of `markdown` (fenced blocks left out), with its line.
fn code_spans(markdown: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for (n, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            spans.push((n + 1, inside.to_string()));
        }
    }
    spans
}

fn is_rust_path(text: &str) -> bool {
    text.contains("::")
        && text
            .split("::")
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// `tests/....rs` paths anywhere in `line`.
fn test_files_in(line: &str) -> Vec<String> {
    line.match_indices("tests/")
        .filter(|(i, _)| *i == 0 || !line.as_bytes()[i - 1].is_ascii_alphanumeric())
        .filter_map(|(i, _)| {
            let rest = &line[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_/.-".contains(c)))
                .unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches('.');
            // `tests/...rs` is a pattern, not a path.
            (path.ends_with(".rs") && !path.contains("..")).then(|| path.to_string())
        })
        .collect()
}

fn docs() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.push(root().join("README.md"));
    docs.sort();
    docs
}

#[test]
fn every_test_the_docs_name_exists() {
    let (integration, integration_mods) = tests_under(&root().join("tests/it"));
    let (unit, unit_mods) = tests_under(&root().join("src"));
    let top = integration_modules();
    let library = library_items();
    let mut missing = Vec::new();
    let mut named = 0;
    for doc in docs() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let shown = doc.strip_prefix(root()).unwrap().display().to_string();
        for (line, span) in code_spans(&text) {
            if !is_rust_path(&span) {
                continue;
            }
            let first = span.split("::").next().unwrap_or_default();
            let exists = if top.contains(first) {
                if library.contains(&span) {
                    continue;
                }
                integration.contains(&span) || integration_mods.contains(&span)
            } else if span.split("::").any(|s| s == "tests") {
                unit.contains(&span) || unit_mods.contains(&span)
            } else {
                continue;
            };
            named += 1;
            if !exists {
                missing.push(format!("{shown}:{line}: `{span}` is not a test"));
            }
        }
        for (n, line) in text.lines().enumerate() {
            for file in test_files_in(line) {
                named += 1;
                if !root().join(&file).exists() {
                    missing.push(format!("{shown}:{}: {file} does not exist", n + 1));
                }
            }
        }
    }
    assert!(named > 0, "the docs name no test at all: has the syntax changed?");
    assert!(
        missing.is_empty(),
        "the docs name tests that do not exist (give the path `cargo test` prints):\n{}",
        missing.join("\n")
    );
}

#[test]
fn what_counts_as_naming_a_test() {
    let spans = code_spans("a `x::y` b `z`\n```\n`in::fence`\n```\n`tests::t`");
    assert_eq!(spans, [(1, "x::y".into()), (1, "z".into()), (5, "tests::t".into())]);
    assert!(is_rust_path("engine_docker::images::pull"));
    assert!(!is_rust_path("cozyboot up"));
    assert!(!is_rust_path("a::"));
    assert_eq!(
        test_files_in("see tests/it/nodes.rs and (`tests/it/support/guard.rs`). Not mytests/x.rs, tests/...rs"),
        ["tests/it/nodes.rs", "tests/it/support/guard.rs"]
    );
    assert_eq!(
        module_of(Path::new("/r/src/engine/mod.rs"), Path::new("/r/src")),
        ["engine"]
    );
    assert_eq!(
        module_of(Path::new("/r/tests/it/a/b.rs"), Path::new("/r/tests/it")),
        ["a", "b"]
    );
}
