//! `cozyboot render`: write the matchbox tree and show how the containers would run.

use super::{resolve, template, Output};
use crate::cli::RenderArgs;
use crate::error::{Error, Result};
use crate::render::{self, containers, Rendered};
use crate::settings::{Purpose, Resolved, Settings};
use minijinja::context;
use serde_json::json;
use std::path::PathBuf;

const DOCKER_RUN: &str = include_str!("../../templates/docker-run.sh.j2");
const SETTINGS_TABLE: &str = include_str!("../../templates/settings.txt.j2");
const PRECEDENCE: &str = "Later sources win: default < site (what `up` recorded in <data-dir>/.cozyboot/site.json) \
< config file < environment COZYBOOT_* < flag. Derived values are worked out from the result.";

pub fn run(args: &RenderArgs, config: Option<PathBuf>) -> Result<Output> {
    let resolved = resolve(&args.settings, config, Purpose::Render)?;
    if args.print_settings {
        return Ok(print_settings(&resolved));
    }
    if let Some(dir) = &args.kubernetes {
        return super::render_kubernetes::run(args, dir, &resolved);
    }
    let s = &resolved.settings;
    let rendered = crate::store::withdrawal::render_site(s)?;
    let dir = args.output.clone().unwrap_or_else(|| s.data_dir.clone());
    let (written, removed) = render::write_tree(&dir, &rendered.files()).map_err(|e| {
        Error::Failed(format!(
            "cannot write the matchbox config to {}: {e}\n  fix: choose a writable directory with --output, or run as a user who may write there",
            dir.display()
        ))
    })?;

    let runs = docker_runs(s, &rendered);
    let mut human = format!(
        "Rendered {} for {} ({}), {} on {}, boot server {}\n",
        s.variant,
        s.talos_image(),
        s.arches.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
        mode_line(s),
        s.iface,
        s.http_base(),
    );
    human.push_str(&format!("\nmatchbox config in {}:\n", dir.display()));
    for w in &written {
        let verb = if w.changed { "wrote    " } else { "unchanged" };
        human.push_str(&format!("  {verb} {}\n", w.path));
    }
    for r in &removed {
        human.push_str(&format!("  removed   {r}\n"));
    }
    for (role, text) in &runs {
        human.push_str(&format!("\n# {role}\n{text}\n"));
    }
    let uboot = rendered.uboot.as_ref().map(|boot| {
        let file = render::uboot::script_file(boot, &rendered.tree);
        let text = render::uboot::script_text(boot, &rendered.tree);
        human.push_str(&format!(
            "\n# U-Boot's boot script ({}, the text of the image)\n{text}",
            file.path
        ));
        json!({ "file": file.path, "name": boot.name, "script": text })
    });
    let json = json!({
        "settings": s,
        "output_dir": dir,
        "files": written,
        "removed": removed,
        "matchbox": { "image": s.matchbox_image(), "args": rendered.matchbox_args, "docker_run": runs[0].1 },
        "dnsmasq": { "image": dnsmasq_image(s), "args": rendered.dnsmasq_args, "docker_run": runs[1].1 },
        "uboot": uboot,
    });
    Ok(Output::new(human, json))
}

fn mode_line(s: &Settings) -> String {
    match &s.dhcp {
        crate::settings::DhcpMode::Proxy => "proxy DHCP".to_string(),
        crate::settings::DhcpMode::Full {
            range_start, range_end, ..
        } => format!("full DHCP {range_start}-{range_end}"),
    }
}

/// Without an engine to ask, the dnsmasq image is the one for this machine's architecture.
fn dnsmasq_image(s: &Settings) -> String {
    let arch = crate::artifacts::arch::Arch::host().unwrap_or(crate::artifacts::arch::Arch::Amd64);
    s.dnsmasq_image_for(arch.name())
}

fn docker_runs(s: &Settings, rendered: &Rendered) -> [(&'static str, String); 2] {
    containers::specs(s, rendered, &dnsmasq_image(s)).map(|spec| {
        let args: Vec<String> = spec.cmd.iter().map(|a| shell_quote(a)).collect();
        let options = containers::docker_run_options(&spec);
        let text = template(
            "docker-run",
            DOCKER_RUN,
            context! { name => spec.name, options, image => spec.image, args },
        );
        let role = spec.labels.get(containers::LABEL_ROLE).map_or("", String::as_str);
        (if role == "matchbox" { "matchbox" } else { "dnsmasq" }, text)
    })
}

fn print_settings(resolved: &Resolved) -> Output {
    let rows: Vec<serde_json::Value> = resolved
        .settings
        .describe()
        .into_iter()
        .map(|(key, value)| {
            let source = resolved
                .origins
                .get(key)
                .map_or_else(|| "default".to_string(), |s| s.to_string());
            json!({ "key": key, "value": value, "source": source })
        })
        .collect();
    let width = rows
        .iter()
        .map(|r| r["key"].as_str().map_or(0, str::len))
        .max()
        .unwrap_or(0);
    let mut human = template("settings", SETTINGS_TABLE, context! { rows, width })
        .trim_start()
        .to_string();
    human.push_str(&format!("\n\n{PRECEDENCE}"));
    let json = json!({
        "settings": resolved.settings, "origins": resolved.origins,
        "config_file": resolved.config_file, "site_file": resolved.site_file,
        "precedence": ["default", "site", "file", "env", "flag"],
    });
    Output::new(human, json)
}

/// Quotes only what a shell would misread; `!` too, for interactive bash's history expansion.
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_=,:./@%+".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        shell_words::quote(arg).into_owned()
    }
}
