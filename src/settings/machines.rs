//! The machines the operator names in `machines:` (hostname, MAC, arch, how to power it), as
//! validated settings. What a driver sends or runs is built from these in `host::power`.

use crate::artifacts::arch::Arch;
use serde::Serialize;
use std::net::Ipv4Addr;

/// A declared machine; its MAC is lower-case and colon-separated, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub mac: String,
    pub arch: Option<Arch>,
    pub board: Option<String>,
    pub power: Option<Power>,
}

/// How cozyboot powers a machine: one driver per machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "driver", rename_all = "kebab-case")]
pub enum Power {
    /// The magic packet out of the site's interface; `None`: the limited broadcast.
    Wol { broadcast: Option<Ipv4Addr> },
    /// Commands (argv templates, never run by a shell) per action.
    Command {
        on: Template,
        off: Template,
        status: Option<Template>,
        /// `None`: off, then on.
        cycle: Option<Template>,
    },
    /// `ipmitool` against the machine's BMC; the password is read from `password_env` when
    /// the command runs and handed to ipmitool in its environment (`-E`), never in argv.
    Ipmi {
        host: String,
        user: String,
        password_env: String,
        interface: String,
        /// ipmitool's `-C`; `None`: ipmitool asks the BMC which suites it has.
        cipher_suite: Option<u8>,
    },
}

impl Power {
    pub fn driver(&self) -> &'static str {
        match self {
            Power::Wol { .. } => "wol",
            Power::Command { .. } => "command",
            Power::Ipmi { .. } => "ipmi",
        }
    }
}

/// The placeholders a command template may use.
pub const PLACEHOLDERS: [&str; 3] = ["mac", "hostname", "serial"];

/// A command line split into words as a POSIX shell would (quotes kept together), each word
/// still holding its `{placeholders}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    pub text: String,
    pub words: Vec<String>,
}

impl Template {
    /// Splits `text` and checks every `{name}` in it; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let words = shell_words::split(text).map_err(|e| format!("cannot be split into words: {e}"))?;
        if words.is_empty() {
            return Err("is empty".into());
        }
        for word in &words {
            for name in placeholders(word)? {
                if !PLACEHOLDERS.contains(&name.as_str()) {
                    return Err(format!(
                        "uses the placeholder {{{name}}}, which cozyboot does not know (it knows {})",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                    ));
                }
            }
        }
        Ok(Template {
            text: text.to_string(),
            words,
        })
    }

    pub fn needs(&self, placeholder: &str) -> bool {
        self.words
            .iter()
            .any(|w| placeholders(w).is_ok_and(|names| names.iter().any(|n| n == placeholder)))
    }

    /// The argv with every placeholder replaced; `value` answers for each name used.
    pub fn fill(&self, value: &dyn Fn(&str) -> String) -> Vec<String> {
        self.words
            .iter()
            .map(|w| {
                let mut out = w.clone();
                for name in PLACEHOLDERS {
                    let token = format!("{{{name}}}");
                    if out.contains(&token) {
                        out = out.replace(&token, &value(name));
                    }
                }
                out
            })
            .collect()
    }
}

/// The `{name}`s in one word; a `{` without its `}` is an error.
fn placeholders(word: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("has a '{{' without its '}}' in '{word}'"));
        };
        names.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    Ok(names)
}

/// A board name saying Raspberry Pi 4 or Compute Module 4.
fn is_pi4_board(board: &str) -> bool {
    let b: String = board
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    ["pi4", "rpi4", "raspberrypi4", "cm4", "rpicm4", "computemodule4"].contains(&b.as_str())
}

/// Why this machine cannot be woken by a magic packet, if we know: a Raspberry Pi by its MAC
/// prefix, or an arm64 machine declared as a Pi 4 / CM4.
pub fn cannot_wake_on_lan(mac: &str, arch: Option<Arch>, board: Option<&str>) -> Option<String> {
    if crate::artifacts::rpi::is_raspberry_pi_mac(mac) {
        return Some(format!(
            "{mac} is a Raspberry Pi's address (its maker prefix is Raspberry Pi's), and a Raspberry Pi 4 / CM4's Ethernet cannot wake on LAN: a magic packet does nothing"
        ));
    }
    if arch != Some(Arch::Amd64) && board.is_some_and(is_pi4_board) {
        return Some(format!(
            "the board is declared as {}, and a Raspberry Pi 4 / CM4's Ethernet cannot wake on LAN: a magic packet does nothing",
            board.unwrap_or_default()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_like_a_shell_and_know_three_placeholders() {
        let t = Template::parse("tpi power on -n '{hostname} x' --mac={mac}").unwrap();
        assert_eq!(t.words, ["tpi", "power", "on", "-n", "{hostname} x", "--mac={mac}"]);
        assert!(!t.needs("serial"));
        let filled = t.fill(&|name| format!("<{name}>"));
        assert_eq!(filled, ["tpi", "power", "on", "-n", "<hostname> x", "--mac=<mac>"]);
        assert!(Template::parse("plug {ip} on").unwrap_err().contains("{ip}"));
        assert!(Template::parse("plug {mac on").unwrap_err().contains("without its"));
        assert!(Template::parse("  ").unwrap_err().contains("empty"));
        assert!(Template::parse("echo 'open").unwrap_err().contains("split"));
    }

    #[test]
    fn raspberry_pis_are_known_by_prefix_or_by_declared_board() {
        assert!(cannot_wake_on_lan("dc:a6:32:01:02:03", None, None).is_some());
        assert!(cannot_wake_on_lan("2c:cf:67:01:02:03", Some(Arch::Arm64), None).is_some());
        assert!(cannot_wake_on_lan("52:54:00:01:02:03", Some(Arch::Arm64), Some("CM4")).is_some());
        assert!(cannot_wake_on_lan("52:54:00:01:02:03", Some(Arch::Arm64), Some("rock5b")).is_none());
        assert!(cannot_wake_on_lan("52:54:00:01:02:03", None, None).is_none());
    }
}
