//! Powering declared machines: what each driver sends or runs, built purely from the settings
//! ([`plan`]), then carried out ([`carry_out`]): a Wake-on-LAN magic packet out of the site's
//! interface ([`wol`]), or a command run as an argv, never through a shell ([`run`]), which is
//! also how `ipmitool` is run for the `ipmi` driver.

pub mod run;
pub mod wol;

use crate::settings::machines::{Machine, Power, Template};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddrV4};

/// What `cozyboot power` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    On,
    Off,
    Cycle,
    Status,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::On => "on",
            Action::Off => "off",
            Action::Cycle => "cycle",
            Action::Status => "status",
        }
    }

    /// Whether the machine is (re)started, so its boot can be timed from now.
    pub fn powers_on(self) -> bool {
        matches!(self, Action::On | Action::Cycle)
    }
}

/// The port the magic packet goes to. Wake-on-LAN NICs match the payload whatever the port;
/// 9 (discard) is what `etherwake`/`wakeonlan` use and what routers' directed-broadcast
/// helpers expect; 7 (echo) would make hosts that run an echo service answer.
pub const WOL_PORT: u16 = 9;

/// One thing sent or run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    MagicPacket {
        iface: String,
        to: SocketAddrV4,
        #[serde(skip)]
        packet: Vec<u8>,
    },
    Run {
        argv: Vec<String>,
        /// Variables set for the command: name → the variable its value is read from
        /// (the BMC password: never shown, never in argv).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        env: Vec<(String, String)>,
    },
}

impl Step {
    /// As `--dry-run` prints it.
    pub fn describe(&self) -> String {
        match self {
            Step::MagicPacket { iface, to, packet } => {
                format!("send a {}-byte magic packet to udp {to} out of {iface}", packet.len())
            }
            Step::Run { argv, env } => {
                let words: Vec<String> = argv.iter().map(|w| shell_words::quote(w).into_owned()).collect();
                let vars: Vec<String> = env.iter().map(|(k, from)| format!("{k}=${from} ")).collect();
                format!("run {}{}", vars.concat(), words.join(" "))
            }
        }
    }
}

/// What a plan needs besides the machine: the site's interface and the machine's serial
/// (from the journal), when known.
pub struct Context<'a> {
    pub iface: &'a str,
    pub serial: Option<&'a str>,
}

/// The steps that carry out `action` on `m`, or why they cannot (said before anything is sent).
pub fn plan(m: &Machine, action: Action, cx: &Context<'_>) -> Result<Vec<Step>, String> {
    let Some(power) = &m.power else {
        return Err(format!(
            "{} has no power driver, so cozyboot cannot power it\n  fix: add power: to its entry under machines: (driver: wol, command or ipmi; see docs/fleet.md \"Power\"), or power it by hand",
            m.hostname
        ));
    };
    match power {
        Power::Wol { broadcast } => {
            if action != Action::On {
                return Err(format!(
                    "{}: Wake-on-LAN can only power a machine on; it cannot {} it or ask its state\n  fix: use driver: command or ipmi for machines that must be powered off or asked",
                    m.hostname,
                    if action == Action::Status { "ask".to_string() } else { format!("power {}", action.name()) }
                ));
            }
            let packet =
                wol::magic_packet(&m.mac).ok_or_else(|| format!("{}: {} is not a MAC address", m.hostname, m.mac))?;
            Ok(vec![Step::MagicPacket {
                iface: cx.iface.to_string(),
                to: SocketAddrV4::new(broadcast.unwrap_or(Ipv4Addr::BROADCAST), WOL_PORT),
                packet: packet.to_vec(),
            }])
        }
        Power::Command { on, off, status, cycle } => {
            let templates: Vec<&Template> = match action {
                Action::On => vec![on],
                Action::Off => vec![off],
                Action::Cycle => cycle.as_ref().map_or_else(|| vec![off, on], |c| vec![c]),
                Action::Status => match status {
                    Some(s) => vec![s],
                    None => {
                        return Err(format!(
                            "{}: the command driver has no `status:` command\n  fix: add status: with a command that prints the machine's power state",
                            m.hostname
                        ))
                    }
                },
            };
            if templates.iter().any(|t| t.needs("serial")) && cx.serial.is_none() {
                return Err(format!(
                    "{}: the command uses {{serial}}, but {} was never seen with a serial (iPXE sends it when the machine first netboots)\n  fix: power it on another way once (or write its serial into the command), then `cozyboot nodes` keeps it",
                    m.hostname, m.mac
                ));
            }
            let value = |name: &str| match name {
                "mac" => m.mac.clone(),
                "hostname" => m.hostname.clone(),
                _ => cx.serial.unwrap_or_default().to_string(),
            };
            Ok(templates
                .into_iter()
                .map(|t| Step::Run {
                    argv: t.fill(&value),
                    env: Vec::new(),
                })
                .collect())
        }
        Power::Ipmi {
            host,
            user,
            password_env,
            interface,
            cipher_suite,
        } => Ok(vec![Step::Run {
            argv: ipmitool_argv(host, user, interface, *cipher_suite, action),
            env: vec![("IPMI_PASSWORD".into(), password_env.clone())],
        }]),
    }
}

/// `ipmitool -I lanplus [-C SUITE] -H BMC [-p PORT] -U USER -E chassis power ACTION`; `-E`
/// makes ipmitool read the password from `IPMI_PASSWORD`, so it never shows in `ps`.
pub fn ipmitool_argv(host: &str, user: &str, interface: &str, cipher_suite: Option<u8>, action: Action) -> Vec<String> {
    let mut argv: Vec<String> = vec!["ipmitool".into(), "-I".into(), interface.into()];
    if let Some(suite) = cipher_suite {
        argv.extend(["-C".into(), suite.to_string()]);
    }
    argv.push("-H".into());
    match host.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()) {
        Some((h, port)) => argv.extend([h.to_string(), "-p".into(), port.to_string()]),
        None => argv.push(host.to_string()),
    }
    argv.extend(["-U".into(), user.into(), "-E".into(), "chassis".into(), "power".into()]);
    argv.push(action.name().into());
    argv
}

/// What one step did: for a command, what it printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub step: String,
    pub output: String,
}

/// Carries out the steps in order; the first that fails stops the rest (a cycle whose `off`
/// failed must not claim the machine was restarted).
pub fn carry_out(steps: &[Step], env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Done>, String> {
    let mut done = Vec::new();
    for step in steps {
        let output = match step {
            Step::MagicPacket { iface, to, packet } => {
                wol::send(iface, *to, packet)?;
                String::new()
            }
            Step::Run { argv, env: vars } => {
                let mut set = Vec::new();
                for (name, from) in vars {
                    let value = env(from).ok_or_else(|| format!("the environment variable {from} is not set"))?;
                    set.push((name.clone(), value));
                }
                run::run(argv, &set)?
            }
        };
        done.push(Done {
            step: step.describe(),
            output,
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(power: Option<Power>) -> Machine {
        Machine {
            hostname: "node1".into(),
            mac: "52:54:00:aa:00:01".into(),
            arch: None,
            board: None,
            power,
        }
    }

    const CX: Context<'static> = Context {
        iface: "eth0",
        serial: None,
    };

    #[test]
    fn ipmi_runs_ipmitool_with_the_password_in_its_environment() {
        let m = machine(Some(Power::Ipmi {
            host: "10.0.0.9:6230".into(),
            user: "ADMIN".into(),
            password_env: "BMC_PW".into(),
            interface: "lanplus".into(),
            cipher_suite: Some(3),
        }));
        let steps = plan(&m, Action::Status, &CX).unwrap();
        assert_eq!(
            steps,
            vec![Step::Run {
                argv: "ipmitool -I lanplus -C 3 -H 10.0.0.9 -p 6230 -U ADMIN -E chassis power status"
                    .split(' ')
                    .map(String::from)
                    .collect(),
                env: vec![("IPMI_PASSWORD".into(), "BMC_PW".into())],
            }]
        );
        assert_eq!(
            steps[0].describe(),
            "run IPMI_PASSWORD=$BMC_PW ipmitool -I lanplus -C 3 -H 10.0.0.9 -p 6230 -U ADMIN -E chassis power status"
        );
        assert_eq!(
            ipmitool_argv("bmc1", "u", "lan", None, Action::Off)[3..5],
            ["-H", "bmc1"]
        );
    }

    #[test]
    fn cycle_without_its_own_command_is_off_then_on() {
        let t = |s: &str| Template::parse(s).unwrap();
        let m = machine(Some(Power::Command {
            on: t("plug {hostname} on"),
            off: t("plug {mac} off"),
            status: None,
            cycle: None,
        }));
        let argv: Vec<String> = plan(&m, Action::Cycle, &CX)
            .unwrap()
            .iter()
            .map(Step::describe)
            .collect();
        assert_eq!(argv, ["run plug 52:54:00:aa:00:01 off", "run plug node1 on"]);
        assert!(plan(&m, Action::Status, &CX).unwrap_err().contains("no `status:`"));
        let needs_serial = machine(Some(Power::Command {
            on: t("bmc --serial {serial} on"),
            off: t("x"),
            status: None,
            cycle: None,
        }));
        assert!(plan(&needs_serial, Action::On, &CX)
            .unwrap_err()
            .contains("never seen with a serial"));
        let seen = Context {
            iface: "eth0",
            serial: Some("SN1"),
        };
        assert_eq!(
            plan(&needs_serial, Action::On, &seen).unwrap()[0].describe(),
            "run bmc --serial SN1 on"
        );
    }

    #[test]
    fn wol_only_powers_on_and_a_machine_without_a_driver_is_refused() {
        let m = machine(Some(Power::Wol { broadcast: None }));
        let steps = plan(&m, Action::On, &CX).unwrap();
        assert_eq!(
            steps[0].describe(),
            "send a 102-byte magic packet to udp 255.255.255.255:9 out of eth0"
        );
        assert!(plan(&m, Action::Off, &CX)
            .unwrap_err()
            .contains("can only power a machine on"));
        assert!(plan(&machine(None), Action::On, &CX)
            .unwrap_err()
            .contains("has no power driver"));
    }
}
