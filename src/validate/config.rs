//! Configuration consistency: the running containers against what the settings render, the
//! dnsmasq rules against what each firmware needs (evaluated by [`super::dnsmasq_rules`]), and
//! the Talos configs matchbox serves.

use super::containers::Seen;
use super::dnsmasq_rules::{Client, Rules};
use super::{capped, Check, Findings};
use crate::artifacts::arch::{Arch, POWERPC_OPEN_FIRMWARE};
use crate::render::matchbox::Profile;
use crate::render::{dnsmasq, Rendered};
use crate::settings::Settings;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

const EVIDENCE_LINES: usize = 12;
/// A drift diff is worth reading whole: one changed rule is the whole story.
const DIFF_LINES: usize = 80;

pub fn checks(s: &Settings, rendered: &Rendered, seen: &Seen) -> Vec<Check> {
    let running = seen.dnsmasq.as_ref().map(|c| c.cmd.as_slice());
    let (argv, from) = match running {
        Some(cmd) => (cmd, "the running dnsmasq"),
        None => (rendered.dnsmasq_args.as_slice(), "the settings (no dnsmasq container)"),
    };
    let rules = Rules::parse(argv);
    vec![
        drift("config.dnsmasq-args", "dnsmasq", running, &rendered.dnsmasq_args),
        drift(
            "config.matchbox-args",
            "matchbox",
            seen.matchbox.as_ref().map(|c| c.cmd.as_slice()),
            &rendered.matchbox_args,
        ),
        matchbox_files(s, rendered),
        arch_11(s, &rules, from),
        no_arch_12(&rules, from),
        ipxe_guard(s, &rules, from),
        install_images(s),
        config_urls(s),
    ]
}

// ---- drift --------------------------------------------------------------------------------

fn drift(id: &str, what: &str, running: Option<&[String]>, rendered: &[String]) -> Check {
    let Some(running) = running else {
        return Check::skip(id, format!("no {what} container to compare"));
    };
    let lines = diff(running, rendered);
    if lines.is_empty() {
        return Check::pass(
            id,
            format!(
                "the running {what} has exactly the {} arguments the settings render",
                rendered.len()
            ),
        );
    }
    Check::warn(
        id,
        format!("the running {what} differs from what the settings render (drift)"),
    )
    .evidence_all(capped(lines, DIFF_LINES))
    .fix(format!(
        "run `cozyboot up` with these settings to recreate {what}; if it was started by hand, let cozyboot own it"
    ))
}

/// `- arg` only in the running container, `+ arg` only in what the settings render.
pub fn diff(running: &[String], rendered: &[String]) -> Vec<String> {
    let (have, want) = (counts(running), counts(rendered));
    let mut lines: Vec<String> = running
        .iter()
        .filter(|a| have[a.as_str()] > *want.get(a.as_str()).unwrap_or(&0))
        .map(|a| format!("- {a}"))
        .collect();
    lines.extend(
        rendered
            .iter()
            .filter(|a| want[a.as_str()] > *have.get(a.as_str()).unwrap_or(&0))
            .map(|a| format!("+ {a}")),
    );
    lines.dedup();
    if lines.is_empty() && running != rendered {
        lines.push("the same arguments in another order".into());
    }
    lines
}

fn counts(list: &[String]) -> BTreeMap<&str, i32> {
    let mut m: BTreeMap<&str, i32> = BTreeMap::new();
    for a in list {
        *m.entry(a.as_str()).or_default() += 1;
    }
    m
}

fn matchbox_files(s: &Settings, rendered: &Rendered) -> Check {
    let id = "config.matchbox-files";
    let files = rendered.files();
    let stale: Vec<String> = files
        .iter()
        .filter_map(|f| match fs::read(s.data_dir.join(&f.path)) {
            Ok(content) if content == f.content => None,
            Ok(_) => Some(format!("{} differs from what the settings render", f.path)),
            Err(e) => Some(format!("{}: {e}", f.path)),
        })
        .collect();
    if stale.is_empty() {
        return Check::pass(
            id,
            format!(
                "the {} profile, group and generic files{} on disk are what the settings render",
                files.len(),
                if rendered.uboot.is_some() {
                    " and U-Boot's boot script"
                } else {
                    ""
                }
            ),
        );
    }
    Check::warn(
        id,
        format!(
            "{} of {} rendered files differ from what the settings render",
            stale.len(),
            files.len()
        ),
    )
    .evidence_all(capped(stale, EVIDENCE_LINES))
    .fix("run `cozyboot up` with these settings to write them again")
}

fn ipxe_url(s: &Settings) -> String {
    format!("{}/boot.ipxe", s.http_base())
}

fn arch_11(s: &Settings, rules: &Rules, from: &str) -> Check {
    let id = "config.arch-11";
    if !s.serves(Arch::Arm64) {
        return Check::skip(id, "arm64 is not served");
    }
    let Some(arm64) = Arch::Arm64.firmwares().iter().find(|f| !f.http_boot) else {
        return Check::skip(id, "no ARM64 PXE firmware in the arch table");
    };
    let want = &s.bootloaders.arm64;
    let mut f = Findings::default();
    f.note(format!("rules read from {from}"));
    match rules.answer(&Client::firmware(arm64.code)) {
        Some(line) if &line.file == want => f.note(format!("arch {} → {want} by `{}`", arm64.code, line.arg)),
        Some(line) => f.fail(format!(
            "ARM64 UEFI firmware (arch {}) is offered {}, not the arm64 iPXE binary {want}",
            arm64.code, line.file
        )),
        None => {
            let hint = if rules.rules_for_arch(POWERPC_OPEN_FIRMWARE).is_empty() {
                ""
            } else {
                " (the client-arch 12 rule is PowerPC, see config.no-arch-12)"
            };
            f.fail(format!("no rule maps client-arch {} (ARM64 UEFI) to a boot file: those machines get an address and nothing to boot{hint}", arm64.code));
        }
    }
    let lost_93 = Client {
        arch: None,
        ..Client::firmware(arm64.code)
    };
    if !rules.proxy && rules.answer(&lost_93).is_none_or(|l| &l.file != want) {
        f.warn("no vendor-class fallback (`PXEClient:Arch:00011`) for UEFI stacks that lose option 93");
    }
    let check = f.into_check(
        id,
        format!("ARM64 UEFI firmware (arch {}) is offered {want}", arm64.code),
    );
    with_fix(
        check,
        "map arch 11 (not 12) to the arm64 iPXE binary: `cozyboot up` renders it",
    )
}

fn no_arch_12(rules: &Rules, from: &str) -> Check {
    let id = "config.no-arch-12";
    let lines = rules.rules_for_arch(POWERPC_OPEN_FIRMWARE);
    if lines.is_empty() {
        return Check::pass(id, "no client-arch 12 rule").evidence(format!("rules read from {from}"));
    }
    Check::fail(
        id,
        "a client-arch 12 rule: 12 is PowerPC Open Firmware, not ARM64 (ARM64 UEFI sends 11)",
    )
    .evidence_all(lines.iter().map(|l| format!("{l} (in {from})")))
    .fix("remove the client-arch 12 rule; `cozyboot up` renders client-arch 11 for ARM64")
}

/// iPXE sends the firmware's arch code too: unless every firmware line excludes the `ipxe`
/// tag, what it gets depends on line order, and the wrong order is an endless chainload.
fn ipxe_guard(s: &Settings, rules: &Rules, from: &str) -> Check {
    let id = "config.ipxe-guard";
    let url = ipxe_url(s);
    let mut f = Findings::default();
    f.note(format!("rules read from {from}"));
    let codes: Vec<u16> = dnsmasq::served_firmwares(s)
        .filter(|fw| !fw.http_boot)
        .map(|fw| fw.code)
        .collect();
    for code in codes {
        match rules.answer(&Client::ipxe(code)) {
            Some(line) if line.file == url => f.note(format!("iPXE on arch {code} → {url}")),
            Some(line) if line.file.starts_with("http") => {
                f.fail(format!("iPXE on arch {code} is sent to {}, not {url}", line.file))
            }
            Some(line) => f.fail(format!(
                "iPXE on arch {code} is handed {} again by `{}`: an endless chainload loop",
                line.file, line.arg
            )),
            None => f.fail(format!(
                "iPXE on arch {code} is offered no boot script (expected {url})"
            )),
        }
    }
    let unguarded: Vec<&str> = rules
        .boots
        .iter()
        .filter(|b| !b.file.starts_with("http") && !b.guards_ipxe())
        .map(|b| b.arg.as_str())
        .collect();
    if !unguarded.is_empty() {
        f.warn(format!(
            "{} firmware boot line(s) lack tag:!{}: what iPXE gets depends on line order",
            unguarded.len(),
            dnsmasq::IPXE_TAG
        ));
        f.evidence.extend(capped(
            unguarded.iter().map(|l| format!("unguarded: {l}")),
            EVIDENCE_LINES,
        ));
    }
    let check = f.into_check(
        id,
        format!(
            "every firmware line carries tag:!{}; iPXE gets {url}",
            dnsmasq::IPXE_TAG
        ),
    );
    with_fix(
        check,
        "put tag:!ipxe on every firmware boot line (`cozyboot up` renders them so)",
    )
}

// ---- Talos configs ------------------------------------------------------------------------------

/// The profiles matchbox serves from the data dir, by file name.
fn profiles_on_disk(s: &Settings) -> Vec<(String, Result<Profile, String>)> {
    let mut out: Vec<_> = files_in(&s.data_dir.join("profiles"))
        .into_iter()
        .filter(|name| name.ends_with(".json"))
        .map(|name| {
            let parsed = fs::read(s.data_dir.join("profiles").join(&name))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Profile>(&b).map_err(|e| e.to_string()));
            (name, parsed)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Regular, non-hidden files directly in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn install_images(s: &Settings) -> Check {
    let id = "config.talos-install-image";
    let generic = s.data_dir.join("generic");
    let files = files_in(&generic);
    if files.is_empty() {
        return Check::skip(id, "no Talos configs are served (nodes boot into maintenance mode)");
    }
    let expected = s.talos_image();
    let served_by: Vec<(String, String)> = profiles_on_disk(s)
        .into_iter()
        .filter_map(|(name, p)| Some((p.ok()?.generic_id, name)))
        .collect();
    let mut f = Findings::default();
    for name in &files {
        let by = served_by.iter().find(|(gid, _)| gid == name).map_or_else(
            || "served by no profile".to_string(),
            |(_, profile)| format!("served by profiles/{profile}"),
        );
        let content = fs::read_to_string(generic.join(name)).unwrap_or_default();
        match install_image(&content) {
            Ok(Some(image)) if image == expected => {
                f.note(format!("generic/{name} ({by}): machine.install.image = {image}"))
            }
            Ok(Some(image)) => f.fail(format!(
                "generic/{name} ({by}) installs {image}, but nodes PXE-boot the kernel and initramfs of {expected}"
            )),
            Ok(None) => f.fail(format!(
                "generic/{name} ({by}) sets no machine.install.image: Talos would install its stock installer"
            )),
            Err(e) => f.fail(format!("generic/{name} ({by}) is not a Talos machine config: {e}")),
        }
        if content.contains("{{") {
            f.fail(format!(
                "generic/{name} contains `{{{{`, which matchbox evaluates as a Go template"
            ));
        }
    }
    let check = f.into_check(id, format!("every served Talos config installs {expected}"));
    with_fix(
        check,
        &format!(
            "set machine.install.image: {expected} in the config and run `cozyboot up` (it refuses mismatched configs)"
        ),
    )
}

/// `machine.install.image` from the first YAML document with a `machine` section.
fn install_image(content: &str) -> Result<Option<String>, String> {
    use serde::Deserialize;
    for document in serde_yaml_ng::Deserializer::from_str(content) {
        let value = serde_yaml_ng::Value::deserialize(document).map_err(|e| e.to_string())?;
        if let Some(machine) = value.get("machine") {
            let image = machine
                .get("install")
                .and_then(|i| i.get("image"))
                .and_then(|i| i.as_str());
            return Ok(image.map(str::to_string));
        }
    }
    Err("no `machine:` section".into())
}

fn config_urls(s: &Settings) -> Check {
    let id = "config.talos-config-url";
    let profiles = profiles_on_disk(s);
    if profiles.is_empty() {
        return Check::skip(id, "no profiles on disk (see config.matchbox-files)");
    }
    let mut f = Findings::default();
    for (name, profile) in &profiles {
        let profile = match profile {
            Ok(p) => p,
            Err(e) => {
                f.fail(format!("profiles/{name} is not a matchbox profile: {e}"));
                continue;
            }
        };
        for url in profile.boot.args.iter().filter_map(|a| a.strip_prefix("talos.config=")) {
            config_url(name, url, &mut f);
        }
    }
    let check = f.into_check(
        id,
        "no talos.config points at /ignition, and /generic URLs carry the arch label",
    );
    with_fix(check, "serve Talos configs through /generic with `arch=${buildarch:uristring}&mac=${mac:hexhyp}` (what `cozyboot up` renders)")
}

fn config_url(profile: &str, url: &str, f: &mut Findings) {
    if url.contains("/ignition") {
        f.fail(format!(
            "profiles/{profile}: talos.config={url} points at /ignition, which renders only Ignition: Talos gets 404"
        ));
    } else if url.contains("/generic") && !url.contains("arch=") {
        f.fail(format!(
            "profiles/{profile}: talos.config={url} lacks arch=: the groups select on arch, so /generic answers 404"
        ));
    } else {
        f.note(format!("profiles/{profile}: talos.config={url}"));
    }
}

fn with_fix(check: Check, fix: &str) -> Check {
    match check.status {
        super::Status::Pass | super::Status::Skip => check,
        _ => check.fix(fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn diff_shows_removed_and_added_arguments() {
        let running = argv(&["-d", "--dhcp-match=set:a,option:client-arch,12", "-q"]);
        let rendered = argv(&["-d", "--dhcp-match=set:a,option:client-arch,11"]);
        assert_eq!(
            diff(&running, &rendered),
            vec![
                "- --dhcp-match=set:a,option:client-arch,12",
                "- -q",
                "+ --dhcp-match=set:a,option:client-arch,11"
            ]
        );
        assert_eq!(
            diff(&argv(&["a", "b"]), &argv(&["b", "a"])),
            vec!["the same arguments in another order"]
        );
        assert!(diff(&rendered, &rendered).is_empty());
    }

    #[test]
    fn reads_the_install_image() {
        let yaml = "version: v1alpha1\nmachine:\n  install:\n    image: r/talos:v1\n";
        assert_eq!(install_image(yaml).unwrap().as_deref(), Some("r/talos:v1"));
        assert_eq!(install_image("machine:\n  type: worker\n").unwrap(), None);
        assert!(install_image("cluster: {}\n").is_err());
    }

    #[test]
    fn talos_config_urls_must_not_use_ignition_and_must_carry_arch() {
        let check = |url: &str| {
            let mut f = Findings::default();
            config_url("p.json", url, &mut f);
            f.into_check("x", "ok").status
        };
        use crate::validate::Status;
        assert_eq!(check("http://h:8080/ignition?mac=${mac:hexhyp}"), Status::Fail);
        assert_eq!(check("http://h:8080/generic?mac=${mac:hexhyp}"), Status::Fail);
        assert_eq!(
            check("http://h:8080/generic?arch=${buildarch:uristring}&mac=${mac:hexhyp}"),
            Status::Pass
        );
    }
}
