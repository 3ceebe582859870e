//! Which functions reach `support::guard`, and which functions a test runs on its way.

use super::*;

/// The keys a call may name: `Type::name` for `Type::name(..)` (`Self` is the function's own
/// type), `name` for a free function however its module is written, `.name` for a method.
pub(super) fn call_keys(expr: &Expr, own_type: Option<&str>) -> Vec<String> {
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
pub(super) struct Calls<'a> {
    own_type: Option<&'a str>,
    keys: BTreeSet<String>,
}

impl<'ast> Visit<'ast> for Calls<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        self.keys.extend(call_keys(e, self.own_type));
        visit::visit_expr(self, e);
    }
}

pub(super) fn calls_in(visit_with: impl FnOnce(&mut Calls<'_>), own_type: Option<&str>) -> BTreeSet<String> {
    let mut calls = Calls {
        own_type,
        keys: BTreeSet::new(),
    };
    visit_with(&mut calls);
    calls.keys
}

pub(super) fn own_type(f: &Function) -> Option<&str> {
    f.keys.first().and_then(|k| k.split_once("::")).map(|(ty, _)| ty)
}

/// The keys of the functions that reach `support::guard`, directly or through one another.
pub(super) fn guarded(functions: &[Function]) -> BTreeSet<String> {
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

/// Every call a function makes itself: not in its closures or `async` blocks, which run as
/// code of their own (a spawned server, a poll), nor in nested items.
pub(super) struct DirectCalls<'a> {
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
pub(super) fn on_a_tests_way(functions: &[Function]) -> Vec<&Function> {
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
