//! No test passes by skipping what it checks. Read as Rust syntax, the test code — all of
//! `tests/it/**`, and the `#[cfg(test)]` code of `src/**` — must not have
//!
//! - an early exit that says all went well (`return;`, `return None`, `return false`,
//!   `return Ok(())`, also as the `else` of a `let ... else`) in a test, or in a helper on a
//!   test's way (called by it, transitively, not from a closure or an `async` block) that
//!   returns `()`, an `Option` or a `bool`, unless the guard justifies it: the `if` condition,
//!   the `let ... else` or `match` scrutinee, or a statement before it in its block calls a
//!   function that goes through `support::guard` (directly or through other such functions of
//!   the test tree, matched by name). Exits in loops (a search or a poll that ends) and in
//!   closures are ordinary code;
//! - in a test function, an assertion inside an `if` or `if let` that has no `else`: when the
//!   condition does not hold the assertion is passed over and the test passes.
//!
//! The unit tests of `src/` have no prerequisites at all, so no early exit there is justified:
//! a check that needs the host goes to `tests/it` and through the guard. See docs/testing.md.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Attribute, Block, Expr, ImplItem, Item, Stmt};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One problem, where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    file: String,
    line: usize,
    function: String,
    what: &'static str,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: in `{}`: {}", self.file, self.line, self.function, self.what)
    }
}

const UNGUARDED_EXIT: &str = "an early exit that no call through support::guard justifies \
    (a skip must go through the guard: where tests must run, it fails)";
const SKIPPABLE_ASSERTION: &str = "an assertion inside an `if`/`if let` with no `else`: \
    when the condition fails the test passes without it";

// ---- the test code ----------------------------------------------------------------------

/// A function of the test code: its key (`name`, `Type::name`, or `.name` for a method), where
/// it is, whether it is a test, and its body.
struct Function {
    keys: Vec<String>,
    file: String,
    name: String,
    is_test: bool,
    /// Whether it returns what a skip returns: nothing, an `Option` or a `bool`.
    may_skip: bool,
    body: Block,
}

/// `()`, `Option<..>`, `bool`: the results a helper hands back when it skipped.
fn may_skip(output: &syn::ReturnType) -> bool {
    match output {
        syn::ReturnType::Default => true,
        syn::ReturnType::Type(_, ty) => match &**ty {
            syn::Type::Tuple(t) => t.elems.is_empty(),
            syn::Type::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Option" || s.ident == "bool"),
            _ => false,
        },
    }
}

fn is_test_attr(attr: &Attribute) -> bool {
    attr.path().segments.last().is_some_and(|s| s.ident == "test")
}

fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.parse_args::<syn::Meta>().is_ok_and(|m| m.path().is_ident("test")))
}

fn type_name(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// Collects the functions of `items`; `in_test` says whether the items are test code. Files
/// of `mod name;` declarations that are test code are queued in `files`.
fn collect(
    root: &Path,
    items: &[Item],
    file: &Path,
    in_test: bool,
    out: &mut Vec<Function>,
    files: &mut VecDeque<(PathBuf, bool)>,
) {
    let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
    for item in items {
        match item {
            Item::Fn(f) => {
                if in_test || is_cfg_test(&f.attrs) || f.attrs.iter().any(is_test_attr) {
                    out.push(Function {
                        keys: vec![f.sig.ident.to_string()],
                        file: shown.clone(),
                        name: f.sig.ident.to_string(),
                        is_test: f.attrs.iter().any(is_test_attr),
                        may_skip: may_skip(&f.sig.output),
                        body: (*f.block).clone(),
                    });
                }
            }
            Item::Impl(i) if in_test || is_cfg_test(&i.attrs) => {
                let ty = type_name(&i.self_ty).unwrap_or_default();
                for member in &i.items {
                    if let ImplItem::Fn(f) = member {
                        let name = f.sig.ident.to_string();
                        let mut keys = vec![format!("{ty}::{name}")];
                        if f.sig.receiver().is_some() {
                            keys.push(format!(".{name}"));
                        }
                        out.push(Function {
                            keys,
                            file: shown.clone(),
                            name: format!("{ty}::{name}"),
                            is_test: false,
                            may_skip: may_skip(&f.sig.output),
                            body: f.block.clone(),
                        });
                    }
                }
            }
            Item::Mod(m) => {
                let test = in_test || is_cfg_test(&m.attrs);
                match &m.content {
                    Some((_, inner)) => collect(root, inner, file, test, out, files),
                    None if test => files.push_back((module_file(file, m), true)),
                    None => {}
                }
            }
            _ => {}
        }
    }
}

/// The file of `mod name;` declared in `file` (`#[path]` is relative to `file`'s folder).
fn module_file(file: &Path, m: &syn::ItemMod) -> PathBuf {
    let name = m.ident.to_string();
    let path_attr = m
        .attrs
        .iter()
        .find(|a| a.path().is_ident("path"))
        .and_then(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        });
    if let Some(relative) = path_attr {
        return file.parent().unwrap_or(Path::new(".")).join(relative);
    }
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let dir = file.parent().unwrap_or(Path::new("."));
    let dir = if matches!(stem, "mod" | "lib" | "main") {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every function of the test code under `root`: `tests/it/**`, and `src/**`'s `#[cfg(test)]`
/// items and the files they declare.
fn test_code(root: &Path) -> Vec<Function> {
    let mut queue: VecDeque<(PathBuf, bool)> = rust_files(&root.join("tests/it"))
        .into_iter()
        .map(|p| (p, true))
        .collect();
    queue.extend(rust_files(&root.join("src")).into_iter().map(|p| (p, false)));
    let mut seen: BTreeMap<PathBuf, bool> = BTreeMap::new();
    let mut out = Vec::new();
    while let Some((path, in_test)) = queue.pop_front() {
        // A file already read as test code has nothing more to give; one read as library code
        // is read again once a `#[cfg(test)] mod` declares it.
        if seen.get(&path).is_some_and(|&was| was || !in_test) {
            continue;
        }
        seen.insert(path.clone(), in_test);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let in_test = in_test || is_cfg_test(&file.attrs);
        if in_test {
            out.retain(|f: &Function| Path::new(&f.file) != path.strip_prefix(root).unwrap_or(&path));
        }
        collect(root, &file.items, &path, in_test, &mut out, &mut queue);
    }
    out
}

// ---- which functions go through the guard -----------------------------------------------

/// The keys a call may name: `Type::name` for `Type::name(..)` (`Self` is the function's own
/// type), `name` for a free function however its module is written, `.name` for a method.
fn call_keys(expr: &Expr, own_type: Option<&str>) -> Vec<String> {
    match expr {
        Expr::Call(call) => match &*call.func {
            Expr::Path(p) => {
                let segments: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
                if segments.iter().any(|s| s == "guard") {
                    return vec!["guard".into()];
                }
                let name = segments.last().cloned().unwrap_or_default();
                match segments.len().checked_sub(2).map(|i| segments[i].as_str()) {
                    Some("Self") => vec![format!("{}::{name}", own_type.unwrap_or("Self"))],
                    Some(parent) if parent.starts_with(char::is_uppercase) => vec![format!("{parent}::{name}")],
                    _ => vec![name],
                }
            }
            _ => vec![],
        },
        Expr::MethodCall(m) => vec![format!(".{}", m.method)],
        _ => vec![],
    }
}

/// Every call in a piece of syntax, closures included.
struct Calls<'a> {
    own_type: Option<&'a str>,
    keys: BTreeSet<String>,
}

impl<'ast> Visit<'ast> for Calls<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        self.keys.extend(call_keys(e, self.own_type));
        visit::visit_expr(self, e);
    }
}

fn calls_in(visit_with: impl FnOnce(&mut Calls<'_>), own_type: Option<&str>) -> BTreeSet<String> {
    let mut calls = Calls {
        own_type,
        keys: BTreeSet::new(),
    };
    visit_with(&mut calls);
    calls.keys
}

fn own_type(f: &Function) -> Option<&str> {
    f.keys.first().and_then(|k| k.split_once("::")).map(|(ty, _)| ty)
}

/// The keys of the functions that reach `support::guard`, directly or through one another.
fn guarded(functions: &[Function]) -> BTreeSet<String> {
    let calls: Vec<BTreeSet<String>> = functions
        .iter()
        .map(|f| calls_in(|c| c.visit_block(&f.body), own_type(f)))
        .collect();
    let mut guarded: BTreeSet<String> = BTreeSet::from(["guard".to_string()]);
    loop {
        let before = guarded.len();
        for (f, called) in functions.iter().zip(&calls) {
            if !called.is_disjoint(&guarded) {
                guarded.extend(f.keys.iter().cloned());
            }
        }
        if guarded.len() == before {
            return guarded;
        }
    }
}

// ---- the rules ----------------------------------------------------------------------------

/// `return`, `return None`, `return false`, `return ()`, `return Ok(())`: an exit that says all
/// went well (or that there was nothing to do).
fn says_nothing(value: Option<&Expr>) -> bool {
    let Some(value) = value else { return true };
    let is_unit = |e: &Expr| matches!(e, Expr::Tuple(t) if t.elems.is_empty());
    match value {
        Expr::Path(p) => p.path.is_ident("None"),
        Expr::Lit(l) => matches!(&l.lit, syn::Lit::Bool(b) if !b.value),
        Expr::Call(c) => {
            matches!(&*c.func, Expr::Path(p) if p.path.is_ident("Ok")) && c.args.len() == 1 && is_unit(&c.args[0])
        }
        other => is_unit(other),
    }
}

fn is_assertion(mac: &syn::Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|s| s.ident.to_string().starts_with("assert"))
}

/// Walks one function's body (not its closures), knowing at each point whether a guard call
/// justifies an exit there.
struct Checker<'a> {
    guarded: &'a BTreeSet<String>,
    own_type: Option<&'a str>,
    function: &'a Function,
    /// Whether an enclosing condition or scrutinee called through the guard.
    justified: bool,
    /// Whether an enclosing `if` without `else` makes assertions here skippable.
    conditional: bool,
    findings: Vec<Finding>,
}

impl Checker<'_> {
    fn calls_guard(&self, visit_with: impl FnOnce(&mut Calls<'_>)) -> bool {
        !calls_in(visit_with, self.own_type).is_disjoint(self.guarded)
    }

    fn find(&mut self, span: proc_macro2::Span, what: &'static str) {
        self.findings.push(Finding {
            file: self.function.file.clone(),
            line: span.start().line,
            function: self.function.name.clone(),
            what,
        });
    }

    fn within(&mut self, justified: bool, conditional: bool, walk: impl FnOnce(&mut Self)) {
        let saved = (self.justified, self.conditional);
        self.justified |= justified;
        self.conditional |= conditional;
        walk(self);
        (self.justified, self.conditional) = saved;
    }
}

impl<'ast> Visit<'ast> for Checker<'_> {
    fn visit_block(&mut self, block: &'ast Block) {
        // A statement that calls through the guard justifies the exits after it in its block.
        let saved = self.justified;
        for stmt in &block.stmts {
            self.visit_stmt(stmt);
            if self.calls_guard(|c| c.visit_stmt(stmt)) {
                self.justified = true;
            }
        }
        self.justified = saved;
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        let Some(init) = &local.init else { return };
        self.visit_expr(&init.expr);
        if let Some((_, diverge)) = &init.diverge {
            let justified = self.calls_guard(|c| c.visit_expr(&init.expr));
            self.within(justified, false, |me| {
                if let Expr::Block(b) = &**diverge {
                    if let [Stmt::Expr(Expr::Return(r), _)] = b.block.stmts.as_slice() {
                        if says_nothing(r.expr.as_deref()) && !me.justified {
                            me.find(r.span(), UNGUARDED_EXIT);
                        }
                        return;
                    }
                }
                me.visit_expr(diverge);
            });
        }
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        self.visit_expr(&e.cond);
        let justified = self.calls_guard(|c| c.visit_expr(&e.cond));
        let no_else = e.else_branch.is_none();
        self.within(justified, no_else, |me| me.visit_block(&e.then_branch));
        if let Some((_, other)) = &e.else_branch {
            self.within(justified, false, |me| me.visit_expr(other));
        }
    }

    fn visit_expr_match(&mut self, e: &'ast syn::ExprMatch) {
        self.visit_expr(&e.expr);
        let justified = self.calls_guard(|c| c.visit_expr(&e.expr));
        self.within(justified, false, |me| {
            for arm in &e.arms {
                me.visit_arm(arm);
            }
        });
    }

    fn visit_expr_return(&mut self, r: &'ast syn::ExprReturn) {
        let justified = self.justified || r.expr.as_deref().is_some_and(|v| self.calls_guard(|c| c.visit_expr(v)));
        if says_nothing(r.expr.as_deref()) && !justified {
            self.find(r.span(), UNGUARDED_EXIT);
        }
        visit::visit_expr_return(self, r);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if self.function.is_test && self.conditional && is_assertion(mac) {
            self.find(mac.span(), SKIPPABLE_ASSERTION);
        }
    }

    // An exit inside a loop ends a search or a poll (a loop that runs out fails after it).
    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.within(true, false, |me| visit::visit_expr_for_loop(me, e));
    }
    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.within(true, false, |me| visit::visit_expr_while(me, e));
    }
    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        self.within(true, false, |me| visit::visit_expr_loop(me, e));
    }

    // Closures and nested items are code of their own.
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_item(&mut self, _: &'ast Item) {}
}

/// Every call a function makes itself: not in its closures or `async` blocks, which run as
/// code of their own (a spawned server, a poll), nor in nested items.
struct DirectCalls<'a> {
    own_type: Option<&'a str>,
    keys: BTreeSet<String>,
}

impl<'ast> Visit<'ast> for DirectCalls<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        self.keys.extend(call_keys(e, self.own_type));
        visit::visit_expr(self, e);
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
    fn visit_item(&mut self, _: &'ast Item) {}
}

/// The functions a test runs on its way: the tests, and what they call directly, transitively.
/// Their exits decide whether a test's checks run; other helpers' exits are their own logic.
fn on_a_tests_way(functions: &[Function]) -> Vec<&Function> {
    let calls: Vec<BTreeSet<String>> = functions
        .iter()
        .map(|f| {
            let mut calls = DirectCalls {
                own_type: own_type(f),
                keys: BTreeSet::new(),
            };
            calls.visit_block(&f.body);
            calls.keys
        })
        .collect();
    let mut reached: Vec<bool> = functions.iter().map(|f| f.is_test).collect();
    loop {
        let wanted: BTreeSet<&String> = reached
            .iter()
            .zip(&calls)
            .filter(|(r, _)| **r)
            .flat_map(|(_, c)| c.iter())
            .collect();
        let mut grew = false;
        for (f, r) in functions.iter().zip(reached.iter_mut()) {
            if !*r && f.keys.iter().any(|k| wanted.contains(k)) {
                *r = true;
                grew = true;
            }
        }
        if !grew {
            return functions
                .iter()
                .zip(reached)
                .filter(|(_, r)| *r)
                .map(|(f, _)| f)
                .collect();
        }
    }
}

fn findings(root: &Path) -> Vec<Finding> {
    let functions = test_code(root);
    let guarded = guarded(&functions);
    let mut found = Vec::new();
    // A test's every exit counts (`return Ok(())` included); a helper's only when what it
    // returns is what a skip returns (a `Result`'s `Ok(())` is an answer, not a skip).
    for f in on_a_tests_way(&functions)
        .into_iter()
        .filter(|f| f.is_test || f.may_skip)
    {
        let mut checker = Checker {
            guarded: &guarded,
            own_type: own_type(f),
            function: f,
            justified: false,
            conditional: false,
            findings: Vec::new(),
        };
        checker.visit_block(&f.body);
        found.extend(checker.findings);
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_test_can_pass_by_skipping() {
    let found = findings(root());
    let list: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        found.is_empty(),
        "{} place(s) where a test can pass without checking (see tests/it/test_tree.rs):\n{}",
        found.len(),
        list.join("\n")
    );
}

// ---- the rule on small trees ----------------------------------------------------------

/// A tree with `files` (path, Rust source) under a fresh folder, and what the rule finds
/// there, as `file:line function` (and `assertion` for a skippable assertion).
fn findings_in(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    findings(dir.path())
        .into_iter()
        .map(|f| {
            let kind = if f.what == SKIPPABLE_ASSERTION {
                " assertion"
            } else {
                ""
            };
            format!("{}:{} {}{kind}", f.file, f.line, f.function)
        })
        .collect()
}

/// The engine tests as they were: a fixture that checks for the socket by hand, and tests
/// that check the host by hand or assert under an `if let`.
const CHECKED_BY_HAND: &str = r#"
struct Fixture;
impl Fixture {
    async fn new() -> Option<Fixture> {
        if !std::path::Path::new("/var/run/docker.sock").exists() {
            println!("skipped: no engine");
            return None;
        }
        Some(Fixture)
    }
}
async fn with_fixture(body: impl FnOnce(Fixture)) {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    body(fixture);
}
#[tokio::test]
async fn uses_the_engine() {
    with_fixture(|_| {}).await;
}
#[test]
fn needs_merged_usr() {
    if !merged_usr() {
        return;
    }
    assert!(true);
}
fn merged_usr() -> bool {
    std::path::Path::new("/bin").is_symlink()
}
#[test]
fn asserts_when_it_can() {
    if let Some(x) = std::env::var_os("X") {
        assert_eq!(x, "1");
    }
}
"#;

#[test]
fn the_rule_finds_prerequisites_checked_by_hand_and_skippable_assertions() {
    let found = findings_in(&[
        ("tests/it/engine.rs", CHECKED_BY_HAND),
        (
            "src/lib.rs",
            "#[cfg(test)]\nmod tests {\n    #[test]\n    fn needs_ipxe() {\n        if !std::path::Path::new(\"/usr/lib/ipxe\").exists() {\n            return;\n        }\n    }\n}\n",
        ),
    ]);
    assert_eq!(
        found,
        [
            "src/lib.rs:6 needs_ipxe",
            "tests/it/engine.rs:7 Fixture::new",
            "tests/it/engine.rs:14 with_fixture",
            "tests/it/engine.rs:25 needs_merged_usr",
            "tests/it/engine.rs:35 asserts_when_it_can assertion",
        ]
    );
}

/// What the tests do now: prerequisites through the guard (directly, through helpers, as a
/// `let ... else`, after a statement that called it), and early exits that are not skips.
const THROUGH_THE_GUARD: &str = r#"
mod support {
    pub mod guard {
        pub fn skip<T>(_area: Option<&str>, _reason: &str) -> Option<T> { None }
    }
}
fn engine_socket() -> Option<std::path::PathBuf> {
    let socket = std::path::PathBuf::from("/var/run/docker.sock");
    if socket.exists() {
        return Some(socket);
    }
    support::guard::skip(None, "no engine")
}
struct Fixture;
impl Fixture {
    async fn new() -> Option<Fixture> {
        let _socket = engine_socket()?;
        Some(Fixture)
    }
}
async fn with_fixture(body: impl FnOnce(Fixture)) {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    body(fixture);
}
fn unreachable_engine(text: &str) {
    support::guard::skip::<()>(None, text);
}
#[tokio::test]
async fn uses_the_engine() {
    with_fixture(|_| {}).await;
    let code = 3;
    if code == 3 {
        unreachable_engine("exit 3");
        return;
    }
    assert_eq!(code, 0);
}
#[test]
fn polls_and_searches() {
    let found = |needle: u32| -> bool {
        for n in 0..10 {
            if n == needle {
                return true;
            }
        }
        false
    };
    for _ in 0..3 {
        if found(2) {
            return;
        }
    }
    panic!("never found");
}
#[test]
fn asserts_or_fails() {
    answer(true).unwrap();
    if let Some(x) = std::env::var_os("X") {
        assert_eq!(x, "1");
    } else {
        panic!("X is unset");
    }
    let Some(y) = std::env::var_os("Y") else { panic!("Y is unset") };
    assert_eq!(y, "2");
}
fn answer(ok: bool) -> Result<(), String> {
    if ok {
        return Ok(());
    }
    Err("no".into())
}
"#;

#[test]
fn the_rule_accepts_skips_through_the_guard_and_exits_that_are_not_skips() {
    assert_eq!(
        findings_in(&[("tests/it/engine.rs", THROUGH_THE_GUARD)]),
        Vec::<String>::new()
    );
}
