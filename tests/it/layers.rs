//! The layer rule of `src/` (docs/architecture.md, "Layers"): a module names (`crate::X`) only
//! its own layer or a lower one, and the top-level modules import each other without a cycle.
//!
//! Read from the source text, so a reference hidden in a test module, a grouped `use`, or an
//! inline path (`crate::journey::validate_marks::MARK`) counts as much as a `use` line.
//! Comments and string literals do not count: a doc link to a higher layer explains, it does
//! not depend.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom up; `src/lib.rs` declares its modules in this order.
const LAYERS: &[&str] = &[
    "error",
    "artifacts",
    "settings",
    "render",
    "store",
    "plan",
    "engine",
    "host",
    "journey",
    "site",
    "apply",
    "validate",
    "smoke",
    "cli",
    "commands",
];

/// One `crate::X` found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    line: usize,
    module: String,
}

#[test]
fn no_module_names_a_higher_layer() {
    let mut problems = Vec::new();
    for (file, top) in sources() {
        let Some(own) = rank(&top) else {
            problems.push(format!(
                "{}: module `{top}` is in no layer: add it to LAYERS here, to src/lib.rs and to docs/architecture.md",
                shown(&file)
            ));
            continue;
        };
        for r in references(&read(&file)) {
            match rank(&r.module) {
                Some(theirs) if theirs <= own => {}
                Some(_) => problems.push(format!(
                    "{}:{}: `{top}` names `crate::{}`, a higher layer",
                    shown(&file),
                    r.line,
                    r.module
                )),
                None => problems.push(format!(
                    "{}:{}: `{top}` names `crate::{}`, which is in no layer",
                    shown(&file),
                    r.line,
                    r.module
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the layer rule (docs/architecture.md, \"Layers\": {}) is broken:\n{}",
        LAYERS.join(" < "),
        problems.join("\n")
    );
}

#[test]
fn the_top_level_modules_import_each_other_without_a_cycle() {
    // Each edge keeps one place that makes it, to name in the message.
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (file, top) in sources() {
        for r in references(&read(&file)) {
            if r.module != top {
                edges
                    .entry(top.clone())
                    .or_default()
                    .entry(r.module)
                    .or_insert_with(|| format!("{}:{}", shown(&file), r.line));
            }
        }
    }
    let shown: Vec<String> = tangles(&edges)
        .iter()
        .map(|group| {
            let inside: Vec<String> = group
                .iter()
                .flat_map(|from| edges[from].iter().map(move |(to, at)| (from, to, at)))
                .filter(|(_, to, _)| group.contains(*to))
                .map(|(from, to, at)| format!("  {from} -> {to} ({at})"))
                .collect();
            format!("{} import each other:\n{}", group.join(", "), inside.join("\n"))
        })
        .collect();
    assert!(
        shown.is_empty(),
        "import cycles between top-level modules:\n{}",
        shown.join("\n")
    );
}

#[test]
fn lib_rs_declares_the_modules_in_layer_order() {
    let lib = read(&src().join("lib.rs"));
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert_eq!(
        declared, LAYERS,
        "src/lib.rs's `pub mod` lines, in order, are the layers"
    );
}

#[test]
fn architecture_md_lists_the_same_layers() {
    let doc = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"));
    let table = doc
        .split("| layer | folder | may use |")
        .nth(1)
        .expect("docs/architecture.md has the layer table (| layer | folder | may use |)");
    let listed: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(
        listed, LAYERS,
        "docs/architecture.md's layer table, bottom up, is LAYERS"
    );
}

#[test]
fn the_scanner_sees_every_kind_of_reference_and_nothing_else() {
    let text = r##"
use crate::render::Rendered;
use crate::{
    error::Error,
    settings::{self, Settings},
};
fn f() -> bool { crate::journey::validate_marks::MARK.is_empty() }
/// See [`crate::commands`] (a doc link explains; it does not depend).
// crate::cli in a comment
/* crate::smoke in a block comment */
const S: &str = "crate::apply in a string";
const R: &str = r#"crate::validate in a raw string"#;
const C: char = '"'; fn g<'a>(x: &'a str) -> &'a str { let _ = crate::host::ports::probe; x }
macro_rules! m { () => { $crate::site::x }; }
"##;
    let found = references(text);
    let found: Vec<(usize, &str)> = found.iter().map(|r| (r.line, r.module.as_str())).collect();
    assert_eq!(
        found,
        vec![
            (2, "render"),
            (4, "error"),
            (5, "settings"),
            (7, "journey"),
            (13, "host")
        ]
    );
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == module)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn shown(file: &Path) -> String {
    file.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(file)
        .display()
        .to_string()
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every `.rs` file of the library with its top-level module: `src/apply/mod.rs` → `apply`,
/// `src/cli.rs` → `cli`. `lib.rs` is the root and `main.rs` the binary (it names
/// `cozyboot::`, not `crate::`), so neither is in a layer.
fn sources() -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src()).unwrap().to_path_buf();
                let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
                let top = first.trim_end_matches(".rs").to_string();
                if !matches!(top.as_str(), "lib" | "main" | "bin") {
                    found.push((path, top));
                }
            }
        }
    }
    found.sort();
    assert!(found.len() > 50, "found only {} files under src/", found.len());
    found
}

/// The code of `text` with comments and the insides of string and char literals blanked
/// (newlines kept, so line numbers hold).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"') | Some('#')) && !ident_char(i.checked_sub(1).map(|p| chars[p])) {
            // A raw string: r"..." or r#"..."#, ended by the quote and as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let end: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let rest: String = chars[j + 1..].iter().collect();
            let len = rest
                .find(&end)
                .map(|e| rest[..e].chars().count())
                .unwrap_or(rest.chars().count());
            let after = (j + 1 + len + end.chars().count()).min(chars.len());
            out.extend(chars[i..after].iter().map(|&c| blank(c)));
            i = after;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let skip = if chars[i] == '\\' { 2 } else { 1 };
                out.extend(chars[i..(i + skip).min(chars.len())].iter().map(|&c| blank(c)));
                i += skip;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{..}'.
            let close = chars[i + 2..]
                .iter()
                .position(|&c| c == '\'')
                .map_or(chars.len(), |p| i + 3 + p);
            out.extend(std::iter::repeat_n(' ', close - i));
            i = close;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            // Code, and a lifetime's quote.
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Every `crate::X` in the code of `text`, grouped `use crate::{a, b::c}` included; `$crate`
/// (a macro naming its own crate) is not one.
fn references(text: &str) -> Vec<Reference> {
    let code = code_only(text);
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && (code.as_bytes()[at - 1] == b'$' || ident_char(code[..at].chars().last())) {
            continue;
        }
        let after = at + "crate::".len();
        let rest = &code[after..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = 0;
            let mut pieces = Vec::new();
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        pieces.push((start, &group[start..k]));
                        start = k + 1;
                    }
                    _ => {}
                }
                if depth == 0 {
                    pieces.push((start, &group[start..k]));
                    break;
                }
            }
            for (offset, piece) in pieces {
                let lead = piece.len() - piece.trim_start().len();
                let name: String = piece
                    .trim_start()
                    .chars()
                    .take_while(|&c| ident_char(Some(c)))
                    .collect();
                if !name.is_empty() && name != "self" {
                    found.push(Reference {
                        line: line_of(after + 1 + offset + lead),
                        module: name,
                    });
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| ident_char(Some(c))).collect();
            if !name.is_empty() {
                found.push(Reference {
                    line: line_of(at),
                    module: name,
                });
            }
        }
    }
    found
}

/// The groups of modules that reach each other through imports (the graph's strongly
/// connected components of more than one module): each holds at least one cycle.
fn tangles(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    let reaches = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for next in edges.get(&m).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = edges.keys().map(|m| (m, reaches(m))).collect();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for (m, from_m) in &reach {
        let group: Vec<String> = from_m
            .iter()
            .filter(|other| reach.get(other).is_some_and(|r| r.contains(*m)))
            .cloned()
            .collect();
        if group.len() > 1 && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}
