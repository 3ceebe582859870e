//! Command-line flags with Go `flag` package semantics (`-name value`, `-name=value`,
//! `--name`, bool flags without a value, parsing stops at the first non-flag), plus
//! matchbox's `MATCHBOX_<NAME>` environment fallback for flags not given.

use std::collections::BTreeMap;

/// Directory holding the default TLS files. `MATCHBOX_DOUBLE_ETC_DIR` overrides
/// `/etc/matchbox` (test-only; the real matchbox has the -cert-file/-key-file/-ca-file
/// flags and their MATCHBOX_* variables, which the double supports too).
pub fn etc_dir() -> String {
    std::env::var("MATCHBOX_DOUBLE_ETC_DIR")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/etc/matchbox".to_string())
}

#[derive(Clone, Debug)]
pub struct Flags {
    pub address: String,
    pub rpc_address: String,
    pub data_path: String,
    pub assets_path: String,
    pub log_level: String,
    pub cert_file: String,
    pub key_file: String,
    pub ca_file: String,
    pub key_ring_path: String,
    pub web_cert_file: String,
    pub web_key_file: String,
    pub web_ssl: bool,
    pub version: bool,
    pub help: bool,
    /// Test-only fault seed (not in matchbox): answer /boot.ipxe like matchbox < v0.11.0.
    pub compat_no_arch: bool,
    /// Positional arguments after the flags (ignored, like matchbox does).
    pub args: Vec<String>,
}

struct Def {
    name: &'static str,
    is_bool: bool,
    usage: &'static str,
}

const DEFS: &[Def] = &[
    Def {
        name: "address",
        is_bool: false,
        usage: "HTTP listen address",
    },
    Def {
        name: "assets-path",
        is_bool: false,
        usage: "Path to static assets",
    },
    Def {
        name: "ca-file",
        is_bool: false,
        usage: "Path to the CA verify and authenticate client certificates",
    },
    Def {
        name: "cert-file",
        is_bool: false,
        usage: "Path to the server TLS certificate file",
    },
    Def {
        name: "compat-no-arch",
        is_bool: true,
        usage: "TEST-ONLY fault seed (not in matchbox): serve /boot.ipxe without &arch= like matchbox < v0.11.0",
    },
    Def {
        name: "data-path",
        is_bool: false,
        usage: "Path to data directory",
    },
    Def {
        name: "help",
        is_bool: true,
        usage: "print usage and exit",
    },
    Def {
        name: "key-file",
        is_bool: false,
        usage: "Path to the server TLS key file",
    },
    Def {
        name: "key-ring-path",
        is_bool: false,
        usage: "Path to a private keyring file",
    },
    Def {
        name: "log-level",
        is_bool: false,
        usage: "Set the logging level",
    },
    Def {
        name: "rpc-address",
        is_bool: false,
        usage: "RPC listen address",
    },
    Def {
        name: "version",
        is_bool: true,
        usage: "print version and exit",
    },
    Def {
        name: "web-cert-file",
        is_bool: false,
        usage: "Path to the server TLS certificate file",
    },
    Def {
        name: "web-key-file",
        is_bool: false,
        usage: "Path to the server TLS key file",
    },
    Def {
        name: "web-ssl",
        is_bool: true,
        usage: "True to enable HTTPS",
    },
];

/// Outcome of parsing that is not a usable set of flags.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// `-h`/`--help` style request: usage printed, exit 0.
    Help,
    /// Bad command line: message + usage to stderr, exit 2 (Go's flag.ExitOnError).
    Usage(String),
    /// Bad environment value: logged as fatal, exit 1.
    Env(String),
}

impl Flags {
    fn defaults() -> BTreeMap<&'static str, String> {
        let etc = etc_dir();
        let mut m = BTreeMap::new();
        m.insert("address", "127.0.0.1:8080".to_string());
        m.insert("rpc-address", String::new());
        m.insert("data-path", "/var/lib/matchbox".to_string());
        m.insert("assets-path", "/var/lib/matchbox/assets".to_string());
        m.insert("log-level", "info".to_string());
        m.insert("cert-file", format!("{etc}/server.crt"));
        m.insert("key-file", format!("{etc}/server.key"));
        m.insert("ca-file", format!("{etc}/ca.crt"));
        m.insert("key-ring-path", String::new());
        m.insert("web-cert-file", format!("{etc}/ssl/server.crt"));
        m.insert("web-key-file", format!("{etc}/ssl/server.key"));
        for b in ["web-ssl", "version", "help", "compat-no-arch"] {
            m.insert(b, "false".to_string());
        }
        m
    }

    pub fn usage() -> String {
        let d = Self::defaults();
        let mut s = String::from("Usage of matchbox:\n");
        for def in DEFS {
            if def.is_bool {
                s.push_str(&format!("  -{}\n    \t{}\n", def.name, def.usage));
            } else {
                let dv = &d[def.name];
                if dv.is_empty() {
                    s.push_str(&format!("  -{} string\n    \t{}\n", def.name, def.usage));
                } else {
                    s.push_str(&format!(
                        "  -{} string\n    \t{} (default {:?})\n",
                        def.name, def.usage, dv
                    ));
                }
            }
        }
        s
    }

    /// Parse `args` (without the program name) and the environment through `env`.
    pub fn parse_with_env(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Flags, ParseError> {
        let mut vals = Self::defaults();
        let mut set_on_cli = std::collections::BTreeSet::new();
        let mut i = 0;
        let mut rest = Vec::new();
        while i < args.len() {
            let a = &args[i];
            if a.len() < 2 || !a.starts_with('-') {
                rest.extend_from_slice(&args[i..]);
                break;
            }
            let mut name = &a[1..];
            if let Some(n) = name.strip_prefix('-') {
                if n.is_empty() {
                    // "--" terminates the flags
                    rest.extend_from_slice(&args[i + 1..]);
                    break;
                }
                name = n;
            }
            if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
                return Err(ParseError::Usage(format!("bad flag syntax: {a}")));
            }
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            let Some(def) = DEFS.iter().find(|d| d.name == name) else {
                if name == "h" {
                    return Err(ParseError::Help);
                }
                return Err(ParseError::Usage(format!("flag provided but not defined: -{name}")));
            };
            let value = if def.is_bool {
                match inline {
                    None => "true".to_string(),
                    Some(v) => match parse_bool(&v) {
                        Some(b) => b.to_string(),
                        None => {
                            return Err(ParseError::Usage(format!(
                                "invalid boolean value {v:?} for -{name}: parse error"
                            )))
                        }
                    },
                }
            } else {
                match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.clone(),
                            None => return Err(ParseError::Usage(format!("flag needs an argument: -{name}"))),
                        }
                    }
                }
            };
            vals.insert(def.name, value);
            set_on_cli.insert(def.name);
            i += 1;
        }
        // SetFlagsFromEnv(flag.CommandLine, "MATCHBOX")
        for def in DEFS {
            if set_on_cli.contains(def.name) {
                continue;
            }
            let key = format!("MATCHBOX_{}", def.name.replace('-', "_").to_ascii_uppercase());
            if let Some(v) = env(&key).filter(|v| !v.is_empty()) {
                if def.is_bool {
                    match parse_bool(&v) {
                        Some(b) => {
                            vals.insert(def.name, b.to_string());
                        }
                        None => return Err(ParseError::Env(format!("invalid value {v:?} for {key}: parse error"))),
                    }
                } else {
                    vals.insert(def.name, v);
                }
            }
        }
        let b = |k: &str| vals[k] == "true";
        Ok(Flags {
            address: vals["address"].clone(),
            rpc_address: vals["rpc-address"].clone(),
            data_path: vals["data-path"].clone(),
            assets_path: vals["assets-path"].clone(),
            log_level: vals["log-level"].clone(),
            cert_file: vals["cert-file"].clone(),
            key_file: vals["key-file"].clone(),
            ca_file: vals["ca-file"].clone(),
            key_ring_path: vals["key-ring-path"].clone(),
            web_cert_file: vals["web-cert-file"].clone(),
            web_key_file: vals["web-key-file"].clone(),
            web_ssl: b("web-ssl"),
            version: b("version"),
            help: b("help"),
            compat_no_arch: b("compat-no-arch"),
            args: rest,
        })
    }

    pub fn parse(args: &[String]) -> Result<Flags, ParseError> {
        Self::parse_with_env(args, &|k| std::env::var(k).ok())
    }
}

/// strconv.ParseBool
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Flags, ParseError> {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Flags::parse_with_env(&a, &|_| None)
    }

    #[test]
    fn defaults_like_matchbox() {
        let f = p(&[]).unwrap();
        assert_eq!(f.address, "127.0.0.1:8080");
        assert_eq!(f.data_path, "/var/lib/matchbox");
        assert_eq!(f.assets_path, "/var/lib/matchbox/assets");
        assert_eq!(f.log_level, "info");
        assert_eq!(f.rpc_address, "");
        assert!(!f.compat_no_arch);
    }

    #[test]
    fn both_forms() {
        let f = p(&[
            "-address=0.0.0.0:8080",
            "-data-path",
            "/d",
            "--assets-path",
            "/a",
            "-log-level=debug",
        ])
        .unwrap();
        assert_eq!(f.address, "0.0.0.0:8080");
        assert_eq!(f.data_path, "/d");
        assert_eq!(f.assets_path, "/a");
        assert_eq!(f.log_level, "debug");
        let f = p(&["-compat-no-arch", "-web-ssl=false", "-version=1"]).unwrap();
        assert!(f.compat_no_arch && !f.web_ssl && f.version);
        let f = p(&["-assets-path=", "x", "-address=1"]).unwrap();
        assert_eq!(f.assets_path, "");
        assert_eq!(f.address, "127.0.0.1:8080", "parsing stops at the first non-flag");
        assert_eq!(f.args, vec!["x", "-address=1"]);
    }

    #[test]
    fn errors() {
        assert!(matches!(p(&["-nope"]), Err(ParseError::Usage(m)) if m == "flag provided but not defined: -nope"));
        assert!(matches!(p(&["-address"]), Err(ParseError::Usage(m)) if m == "flag needs an argument: -address"));
        assert!(matches!(p(&["-web-ssl=maybe"]), Err(ParseError::Usage(_))));
        assert_eq!(p(&["-h"]).unwrap_err(), ParseError::Help);
    }

    #[test]
    fn env_fallback() {
        let a: Vec<String> = vec!["-address=1.2.3.4:1".into()];
        let f = Flags::parse_with_env(&a, &|k| match k {
            "MATCHBOX_ADDRESS" => Some("9.9.9.9:9".into()),
            "MATCHBOX_DATA_PATH" => Some("/env".into()),
            "MATCHBOX_COMPAT_NO_ARCH" => Some("true".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(f.address, "1.2.3.4:1", "command line wins");
        assert_eq!(f.data_path, "/env");
        assert!(f.compat_no_arch);
    }
}
