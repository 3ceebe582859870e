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

mod code;
mod reach;
mod rules;
mod small_trees;

use code::*;
use reach::*;
use rules::*;

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
        "{} place(s) where a test can pass without checking (see tests/it/test_tree/mod.rs):\n{}",
        found.len(),
        list.join("\n")
    );
}
