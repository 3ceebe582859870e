//! `machines:`: each declared machine's hostname, MAC, arch and power driver, checked before
//! anything is sent to any of them.

use super::Checker;
use crate::artifacts::arch::Arch;
use crate::settings::machines::{cannot_wake_on_lan, Machine, Power, Template};
use crate::settings::raw::{MachineEntry, PowerEntry, Raw, Text};
use std::net::Ipv4Addr;

const FIELD: &str = "machines";
const PI_FIX: &str = "power a Pi 4 / CM4 with driver: command, through what switches its power: a PoE switch port (e.g. snmpset or the switch's CLI), a Turing Pi 2 BMC (`tpi power on -n N`) or a smart plug";

pub(super) fn machines(c: &mut Checker<'_>, raw: &Raw) -> Vec<Machine> {
    let mut out: Vec<Machine> = Vec::new();
    for entry in raw.machines.iter().flatten() {
        if let Some(m) = machine(c, entry) {
            if out.iter().any(|o| o.mac == m.mac) {
                c.fail(
                    FIELD,
                    Some(&m.mac),
                    "the same MAC address is listed twice",
                    "keep one entry per machine",
                );
            } else if out.iter().any(|o| o.hostname == m.hostname) {
                c.fail(
                    FIELD,
                    Some(&m.hostname),
                    "the same hostname is listed twice",
                    "give each machine a hostname of its own",
                );
            } else {
                out.push(m);
            }
        }
    }
    out
}

fn machine(c: &mut Checker<'_>, e: &MachineEntry) -> Option<Machine> {
    let hostname = e.hostname.0.trim().to_string();
    let hostname_ok = is_dns_label(&hostname);
    if !hostname_ok {
        c.fail(
            FIELD,
            Some(&hostname),
            "the hostname is not a DNS label",
            "use 1 to 63 letters, digits and '-', not starting or ending with '-' (e.g. node1)",
        );
    }
    let mac = super::nodes::normalise_mac(&e.mac.0);
    if mac.is_none() {
        c.fail(
            FIELD,
            Some(&e.mac.0),
            format!("{hostname}: not a MAC address"),
            "write six hex pairs, e.g. dc:a6:32:01:02:03",
        );
    }
    let arch = match e.arch.as_ref().map(|Text(a)| a.parse::<Arch>()) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(problem)) => {
            c.fail(FIELD, Some(&hostname), problem, "use arch: arm64 or arch: amd64");
            return None;
        }
    };
    let board = e.board.as_ref().map(|Text(b)| b.trim().to_string());
    let mac = mac?;
    let power = match &e.power {
        None => None,
        Some(p) => Some(power(c, &hostname, &mac, arch, board.as_deref(), p)?),
    };
    hostname_ok.then_some(Machine {
        hostname,
        mac,
        arch,
        board,
        power,
    })
}

/// RFC 1123: what a hostname may be, and what DHCP and Kubernetes node names take.
fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn power(
    c: &mut Checker<'_>,
    host: &str,
    mac: &str,
    arch: Option<Arch>,
    board: Option<&str>,
    p: &PowerEntry,
) -> Option<Power> {
    let t = |v: &Option<Text>| v.as_ref().map(|Text(s)| s.trim().to_string());
    let given: Vec<(&str, bool)> = vec![
        ("broadcast", p.broadcast.is_some()),
        ("on", p.on.is_some()),
        ("off", p.off.is_some()),
        ("status", p.status.is_some()),
        ("cycle", p.cycle.is_some()),
        ("host", p.host.is_some()),
        ("user", p.user.is_some()),
        ("password-env", p.password_env.is_some()),
        ("interface", p.interface.is_some()),
        ("cipher-suite", p.cipher_suite.is_some()),
    ];
    let driver = t(&p.driver).unwrap_or_default();
    let takes: &[&str] = match driver.as_str() {
        "wol" => &["broadcast"],
        "command" => &["on", "off", "status", "cycle"],
        "ipmi" => &["host", "user", "password-env", "interface", "cipher-suite"],
        "" => {
            c.fail(
                FIELD,
                Some(host),
                format!("{host}: power: names no driver"),
                "add driver: wol, driver: command or driver: ipmi",
            );
            return None;
        }
        other => {
            c.fail(
                FIELD,
                Some(other),
                format!("{host}: unknown power driver"),
                "use driver: wol, driver: command or driver: ipmi",
            );
            return None;
        }
    };
    let stray: Vec<&str> = given
        .iter()
        .filter(|(k, set)| *set && !takes.contains(k))
        .map(|(k, _)| *k)
        .collect();
    if !stray.is_empty() {
        c.fail(
            FIELD,
            Some(host),
            format!("{host}: the {driver} driver does not take {}", stray.join(", ")),
            format!("the {driver} driver takes {}", takes.join(", ")),
        );
        return None;
    }
    match driver.as_str() {
        "wol" => {
            if let Some(why) = cannot_wake_on_lan(mac, arch, board) {
                c.fail(FIELD, Some(host), format!("{host}: driver wol: {why}"), PI_FIX);
                return None;
            }
            let broadcast = match t(&p.broadcast) {
                None => None,
                Some(b) => match b.parse::<Ipv4Addr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        c.fail(
                            FIELD,
                            Some(&b),
                            format!("{host}: broadcast is not an IPv4 address"),
                            "give the boot LAN's broadcast address (e.g. 10.20.13.255), or leave it out for 255.255.255.255 out of the site's interface",
                        );
                        return None;
                    }
                },
            };
            Some(Power::Wol { broadcast })
        }
        "command" => {
            let mut template = |action: &str, v: &Option<Text>, required: bool| -> Result<Option<Template>, ()> {
                match t(v) {
                    None if required => {
                        c.fail(
                            FIELD,
                            Some(host),
                            format!("{host}: the command driver needs `{action}:`"),
                            format!("add {action}: with the command that powers the machine {action}, e.g. tpi power {action} -n 1"),
                        );
                        Err(())
                    }
                    None => Ok(None),
                    Some(text) => match Template::parse(&text) {
                        Ok(tpl) => Ok(Some(tpl)),
                        Err(problem) => {
                            c.fail(
                                FIELD,
                                Some(&text),
                                format!("{host}: the `{action}` command {problem}"),
                                "use {mac}, {hostname} and {serial} only; the command runs without a shell (write sh -c '...' for one)",
                            );
                            Err(())
                        }
                    },
                }
            };
            let on = template("on", &p.on, true);
            let off = template("off", &p.off, true);
            let status = template("status", &p.status, false);
            let cycle = template("cycle", &p.cycle, false);
            match (on, off, status, cycle) {
                (Ok(Some(on)), Ok(Some(off)), Ok(status), Ok(cycle)) => Some(Power::Command { on, off, status, cycle }),
                _ => None,
            }
        }
        _ => {
            let mut need = |key: &str, v: &Option<Text>, example: &str| {
                let value = t(v).filter(|s| !s.is_empty());
                if value.is_none() {
                    c.fail(
                        FIELD,
                        Some(host),
                        format!("{host}: the ipmi driver needs `{key}:`"),
                        format!("add {key}: {example}"),
                    );
                }
                value
            };
            let bmc = need("host", &p.host, "the BMC's address, e.g. 10.20.13.20");
            let user = need("user", &p.user, "the BMC user, e.g. ADMIN");
            let password_env = need(
                "password-env",
                &p.password_env,
                "the name of an environment variable holding the BMC password (never the password itself), e.g. BMC_PASSWORD",
            );
            if let Some(var) = &password_env {
                let ok = var.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                    && !var.starts_with(|ch: char| ch.is_ascii_digit());
                if !ok {
                    c.fail(
                        FIELD,
                        Some(var),
                        format!("{host}: password-env is not the name of an environment variable"),
                        "give the variable's name (letters, digits, '_'), e.g. BMC_PASSWORD; never the password itself",
                    );
                    return None;
                }
            }
            let interface = t(&p.interface).unwrap_or_else(|| "lanplus".into());
            if !["lan", "lanplus"].contains(&interface.as_str()) {
                c.fail(
                    FIELD,
                    Some(&interface),
                    format!("{host}: not an ipmitool interface for a remote BMC"),
                    "use interface: lanplus (IPMI 2.0, the default) or interface: lan (IPMI 1.5)",
                );
                return None;
            }
            let cipher_suite = match t(&p.cipher_suite) {
                None => None,
                Some(s) => match s.parse::<u8>() {
                    Ok(n) if n <= 17 => Some(n),
                    _ => {
                        c.fail(
                            FIELD,
                            Some(&s),
                            format!("{host}: not an IPMI 2.0 cipher suite"),
                            "give a suite number from 0 to 17 (3 and 17 are the common ones), or leave it out for ipmitool to ask the BMC",
                        );
                        return None;
                    }
                },
            };
            Some(Power::Ipmi {
                host: bmc?,
                user: user?,
                password_env: password_env?,
                interface,
                cipher_suite,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Source;
    use std::collections::BTreeMap;

    fn check(yaml: &str) -> (Vec<Machine>, Vec<String>) {
        let raw: Raw = serde_yaml_ng::from_str(yaml).unwrap();
        let mut origins = BTreeMap::from([(FIELD.to_string(), Source::Default)]);
        let mut c = Checker {
            origins: &mut origins,
            errors: Vec::new(),
        };
        let m = machines(&mut c, &raw);
        let errors = c
            .errors
            .iter()
            .map(|e| format!("{} | {} | {}", e.value.clone().unwrap_or_default(), e.problem, e.fix))
            .collect();
        (m, errors)
    }

    #[test]
    fn every_driver_with_its_settings() {
        let (m, errors) = check(
            "machines:
- {hostname: node1, mac: 52-54-00-AA-00-01, arch: amd64, power: {driver: wol}}
- {hostname: node2, mac: 52:54:00:aa:00:02, power: {driver: wol, broadcast: 10.20.13.255}}
- hostname: pi1
  mac: dc:a6:32:00:00:01
  arch: arm64
  power: {driver: command, on: 'tpi power on -n 1', off: 'tpi power off -n 1'}
- {hostname: srv1, mac: 52:54:00:aa:00:04, power: {driver: ipmi, host: 10.0.0.9, user: ADMIN, password-env: BMC_PW}}
- {hostname: bare, mac: 52:54:00:aa:00:05}
",
        );
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].mac, "52:54:00:aa:00:01");
        assert_eq!(
            m[1].power,
            Some(Power::Wol {
                broadcast: Some(Ipv4Addr::new(10, 20, 13, 255))
            })
        );
        assert!(matches!(&m[3].power, Some(Power::Ipmi { interface, .. }) if interface == "lanplus"));
        assert_eq!(m[4].power, None);
    }

    #[test]
    fn each_mistake_is_said_with_its_fix() {
        let cases: &[(&str, &str)] = &[
            ("- {hostname: a, mac: 52:54:00:aa:00:01}\n- {hostname: b, mac: 52-54-00-AA-00-01}", "the same MAC address is listed twice"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01}\n- {hostname: a, mac: 52:54:00:aa:00:02}", "the same hostname is listed twice"),
            ("- {hostname: node_1, mac: 52:54:00:aa:00:01}", "not a DNS label"),
            ("- {hostname: a, mac: 52:54:00:aa:00}", "not a MAC address"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, arch: riscv64}", "use arch: arm64 or arch: amd64"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {driver: telepathy}}", "unknown power driver"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {on: x}}", "names no driver"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {driver: wol, on: x}}", "the wol driver does not take on"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {driver: wol, broadcast: all}}", "broadcast is not an IPv4 address"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {driver: command, on: x}}", "the command driver needs `off:`"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {driver: command, on: 'plug {ip} on', off: x}}", "placeholder {ip}"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {driver: ipmi, host: h, user: u}}", "needs `password-env:`"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {driver: ipmi, host: h, user: u, password-env: 'hunter 2'}}", "not the name of an environment variable"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {driver: ipmi, host: h, user: u, password-env: P, interface: open}}", "interface: lanplus"),
            ("- {hostname: a, mac: 52:54:00:aa:00:01, power: {driver: ipmi, host: h, user: u, password-env: P, cipher-suite: 99}}", "not an IPMI 2.0 cipher suite"),
            ("- {hostname: pi, mac: dc:a6:32:00:00:01, power: {driver: wol}}", "cannot wake on LAN"),
            ("- {hostname: cm4, mac: 02:00:00:00:00:01, arch: arm64, board: cm4, power: {driver: wol}}", "Turing Pi 2 BMC"),
        ];
        for (yaml, expect) in cases {
            let (_, errors) = check(&format!("machines:\n{yaml}\n"));
            assert_eq!(errors.len(), 1, "{yaml}: {errors:?}");
            assert!(errors[0].contains(expect), "{yaml}: {errors:?}");
        }
    }
}
