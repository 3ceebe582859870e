//! `cozyboot up`: resolve, connect, plan, apply, report.

use super::{registry, resolve_fresh, runtime, Output};
use crate::apply::progress::{Printer, ProgressMode};
use crate::apply::{self, UpReport};
use crate::cli::UpArgs;
use crate::engine::docker::Engine;
use crate::error::Result;
use crate::settings::{Purpose, Settings};
use crate::store::withdrawal;
use std::path::PathBuf;

/// `up` never reads a site's record: what it is given is the whole site (a setting given
/// once could otherwise never be taken away, `--rpc` for one). After a successful run it
/// records those settings, so the other commands need none.
pub fn run(args: &UpArgs, config: Option<PathBuf>, json: bool) -> Result<Output> {
    let resolved = resolve_fresh(&args.settings, config, Purpose::Serve)?;
    let s = &resolved.settings;
    let printer = Printer::stderr(ProgressMode::detect(json, false));
    let exposure = config_exposure(s, args)?;
    for line in &exposure {
        printer.line(&format!("warning: {line}"));
    }
    let mut report = runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        let options = apply::UpOptions {
            dry_run: args.dry_run,
            move_foreign: args.move_foreign,
            printer,
        };
        apply::up(s, &engine, options).await
    })?;
    // People read them on stderr as `up` starts; the JSON document carries them too.
    if json {
        report.warnings.extend(exposure);
    }
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

/// What the Talos configs given expose, said before anything starts; with
/// `--serve-configs-again` the record of withdrawn configs is forgotten first (not with
/// `--dry-run`, which changes nothing: its plan keeps them withdrawn).
fn config_exposure(s: &Settings, args: &UpArgs) -> Result<Vec<String>> {
    if args.serve_configs_again && !args.dry_run {
        withdrawal::Record::clear(&s.data_dir)?;
    }
    let record = withdrawal::Record::load(&s.data_dir)?;
    let url = format!("{}/generic", s.http_base());
    Ok(withdrawal::given(s, &record)
        .into_iter()
        .map(|g| match &g.withdrawn {
            None => format!(
                "the Talos config {} (for {}) is served over plain HTTP by {url} to anyone on the network who asks with a MAC it selects (MACs and uuids are easily spoofed); `cozyboot nodes` withdraws it once its machine took it and Talos answers. Maintenance mode (no config served, `talosctl apply-config --insecure`) exposes none",
                g.file.display(),
                g.whom()
            ),
            Some(w) => format!(
                "the Talos config {} (for {}) stays withdrawn: {} took it; `cozyboot up --serve-configs-again` serves it again",
                g.file.display(),
                g.whom(),
                w.mac
            ),
        })
        .collect())
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
