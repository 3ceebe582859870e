//! `cozyboot up`: resolve, connect, plan, apply, report.

use super::{registry, resolve_fresh, runtime, Output};
use crate::apply::progress::{Printer, ProgressMode};
use crate::apply::{self, UpReport};
use crate::cli::UpArgs;
use crate::engine::docker::Engine;
use crate::error::Result;
use crate::settings::Purpose;
use std::path::PathBuf;

/// `up` never reads a site's record: what it is given is the whole site (a setting given
/// once could otherwise never be taken away, `--rpc` for one). After a successful run it
/// records those settings, so the other commands need none.
pub fn run(args: &UpArgs, config: Option<PathBuf>, json: bool) -> Result<Output> {
    let resolved = resolve_fresh(&args.settings, config, Purpose::Serve)?;
    let s = &resolved.settings;
    let mut report = runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        let options = apply::UpOptions {
            dry_run: args.dry_run,
            move_foreign: args.move_foreign,
            printer: Printer::stderr(ProgressMode::detect(json, false)),
        };
        apply::up(s, &engine, options).await
    })?;
    if !report.dry_run {
        let cwd = std::env::current_dir().unwrap_or_default();
        report
            .warnings
            .extend(crate::site::remember(&resolved, &cwd, &registry()));
    }
    Ok(Output::new(
        human(&report, &s.http_base()),
        serde_json::to_value(&report).expect("report serializes"),
    ))
}

fn human(report: &UpReport, base: &str) -> String {
    let mut out = String::new();
    if report.dry_run {
        out.push_str("Plan (--dry-run: nothing was changed):\n");
        for a in &report.actions {
            out.push_str(&format!("  - {}\n", a.describe()));
        }
        return out;
    }
    for w in &report.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for line in &report.done {
        out.push_str(&line.clone());
        out.push('\n');
    }
    out.push_str(&format!("Boot server up: iPXE clients chain {base}/boot.ipxe"));
    out
}
