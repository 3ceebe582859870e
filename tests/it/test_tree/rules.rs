//! The two rules, walked over one function's body.

use super::*;

/// `return`, `return None`, `return false`, `return ()`, `return Ok(())`: an exit that says all
/// went well (or that there was nothing to do).
pub(super) fn says_nothing(value: Option<&Expr>) -> bool {
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

pub(super) fn is_assertion(mac: &syn::Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|s| s.ident.to_string().starts_with("assert"))
}

/// Walks one function's body (not its closures), knowing at each point whether a guard call
/// justifies an exit there.
pub(super) struct Checker<'a> {
    pub(super) guarded: &'a BTreeSet<String>,
    pub(super) own_type: Option<&'a str>,
    pub(super) function: &'a Function,
    /// Whether an enclosing condition or scrutinee called through the guard.
    pub(super) justified: bool,
    /// Whether an enclosing `if` without `else` makes assertions here skippable.
    pub(super) conditional: bool,
    pub(super) findings: Vec<Finding>,
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
