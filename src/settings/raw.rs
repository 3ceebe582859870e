//! One layer of unvalidated settings, as read from a config file, the environment or flags.
//!
//! All three sources share one list of keys (kebab-case in the file and on the command line,
//! `COZYBOOT_UPPER_SNAKE` in the environment), so a user who knows one knows all three.

use super::Source;
use crate::error::setting::ConfigError;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A scalar that YAML may write as a string, a number or a boolean (`http-port: 8080`).
/// Floats are refused because `tag: 1.10` would silently become `1.1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string (quote values such as tags: \"1.10\")")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A Talos config for one node, written `MAC=PATH` or `MAC@ARCH=PATH`, or as a map in YAML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeEntry {
    Short(String),
    #[serde(rename_all = "kebab-case")]
    Long {
        mac: Text,
        config: PathBuf,
        #[serde(default)]
        arch: Option<Text>,
    },
}

/// A Raspberry Pi board and the Pi UEFI firmware settings it boots with: a map in YAML
/// (`serial`, `mac`, `settings`), or `SERIAL[@MAC][;NAME=VALUE...]` in the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RpiNodeEntry {
    Short(String),
    Long {
        serial: Text,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<Text>,
        #[serde(default)]
        settings: BTreeMap<String, Text>,
        /// Keys an entry does not have, kept to be reported by name (an untagged enum's own
        /// error would not name them).
        #[serde(flatten)]
        other: BTreeMap<String, serde_json::Value>,
    },
}

/// One `machines:` entry: a machine the operator names, and how to power it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MachineEntry {
    pub hostname: Text,
    pub mac: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Text>,
    /// Said by the operator (`cm4`, `pi4`, ...) where the MAC's maker does not tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerEntry>,
}

/// A machine's `power:` map; which keys apply depends on `driver` (checked in `build`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PowerEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<Text>,
}

/// What kind of value a key holds, so the environment layer can split lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Scalar,
    List,
    Path,
    /// Structured: only a config file (or a site record) can say it; no variable, no flag.
    FileOnly,
}

macro_rules! raw_layer {
    ($( $field:ident : $ty:ty = $shape:ident ),* $(,)?) => {
        /// One layer of settings; `None` means "this layer does not say".
        #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Raw {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl Raw {
            /// Every key with its shape, in declaration order.
            pub const KEYS: &'static [(&'static str, Shape)] = &[
                $( (stringify!($field), Shape::$shape), )*
            ];

            /// Lays `top` over `self`, recording where each value that `top` sets came from.
            pub fn overlay(&mut self, top: Raw, source: &Source, origins: &mut BTreeMap<String, Source>) {
                $(
                    if let Some(v) = top.$field {
                        self.$field = Some(v);
                        origins.insert(key_name(stringify!($field)), source.clone());
                    }
                )*
            }
        }
    };
}

raw_layer! {
    variant: Text = Scalar,
    tag: Text = Scalar,
    registry: Text = Scalar,
    dnsmasq_image: Text = Scalar,
    iface: Text = Scalar,
    server_ip: Text = Scalar,
    subnet: Text = Scalar,
    dhcp_range: Text = Scalar,
    gateway: Text = Scalar,
    dns: Vec<Text> = List,
    lease_time: Text = Scalar,
    http_port: Text = Scalar,
    data_dir: PathBuf = Path,
    arch: Vec<Text> = List,
    bootloader_arm64: Text = Scalar,
    bootloader_x86_64: Text = Scalar,
    bootloader_bios: Text = Scalar,
    ipxe_arm64: Text = Scalar,
    ipxe_arm64_url: Text = Scalar,
    rpi_uefi: Text = Scalar,
    rpi_netboot: Text = Scalar,
    uboot_netboot: Text = Scalar,
    kernel_args: Vec<Text> = List,
    talos_config: PathBuf = Path,
    talos_nodes: Vec<NodeEntry> = List,
    rpi_nodes: Vec<RpiNodeEntry> = List,
    rpc: Text = Scalar,
    rpc_port: Text = Scalar,
    matchbox_listen: Text = Scalar,
    network: Text = Scalar,
    pull: Text = Scalar,
    log_level: Text = Scalar,
    matchbox_name: Text = Scalar,
    dnsmasq_name: Text = Scalar,
    machines: Vec<MachineEntry> = FileOnly,
}

/// `server_ip` → `server-ip`: the name users see in files, flags and messages.
pub fn key_name(field: &str) -> String {
    field.replace('_', "-")
}

/// `server_ip` → `COZYBOOT_SERVER_IP`.
pub fn env_name(field: &str) -> String {
    format!("COZYBOOT_{}", field.to_ascii_uppercase())
}

/// Reads a YAML config file; unknown keys and type errors are reported with line and column.
pub fn from_file(path: &Path) -> Result<Raw, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "config",
            format!("cannot read config file: {e}"),
            "check the path given to --config (or COZYBOOT_CONFIG) and its permissions",
        )
        .value(path.display().to_string())
    })?;
    if text.trim().is_empty() {
        return Ok(Raw::default());
    }
    let mut raw: Raw = serde_yaml_ng::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
            .unwrap_or_default();
        ConfigError::new(
            "config",
            format!("invalid YAML{at}: {}", strip_location(&e.to_string())),
            format!(
                "edit the file; valid keys are: {}",
                Raw::KEYS
                    .iter()
                    .map(|(k, _)| key_name(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .value(path.display().to_string())
    })?;
    raw.anchor_paths(path.parent().unwrap_or(Path::new(".")));
    Ok(raw)
}

fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

impl Raw {
    /// Paths in a config file are relative to the file, not to wherever cozyboot runs; paths
    /// a site records are made absolute the same way, against the directory `up` ran in.
    pub fn anchor_paths(&mut self, base: &Path) {
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.data_dir.as_mut() {
            anchor(p);
        }
        if let Some(p) = self.talos_config.as_mut() {
            anchor(p);
        }
        for Text(source) in [self.ipxe_arm64.as_mut(), self.rpi_uefi.as_mut()].into_iter().flatten() {
            if !source.contains("://") && Path::new(source.as_str()).is_relative() {
                *source = base.join(&*source).display().to_string();
            }
        }
        for node in self.talos_nodes.iter_mut().flatten() {
            match node {
                NodeEntry::Long { config, .. } => anchor(config),
                NodeEntry::Short(s) => {
                    if let Some((lhs, path)) = s.split_once('=') {
                        if Path::new(path).is_relative() {
                            *s = format!("{lhs}={}", base.join(path).display());
                        }
                    }
                }
            }
        }
    }

    /// Reads every `COZYBOOT_*` key from `lookup`; lists are comma-separated.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Raw {
        let mut map = serde_json::Map::new();
        for (field, shape) in Raw::KEYS {
            let Some(value) = lookup(&env_name(field)) else {
                continue;
            };
            let json = match shape {
                Shape::List => serde_json::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| serde_json::Value::String(s.to_string()))
                        .collect(),
                ),
                Shape::Scalar | Shape::Path => serde_json::Value::String(value),
                Shape::FileOnly => continue,
            };
            map.insert(key_name(field), json);
        }
        // Every value is a string or a list of strings, which every field accepts.
        serde_json::from_value(serde_json::Value::Object(map)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lists_split_on_commas() {
        let raw = Raw::from_env(&|k| match k {
            "COZYBOOT_ARCH" => Some("arm64, amd64".into()),
            "COZYBOOT_HTTP_PORT" => Some("9090".into()),
            _ => None,
        });
        assert_eq!(raw.arch, Some(vec![Text("arm64".into()), Text("amd64".into())]));
        assert_eq!(raw.http_port, Some(Text("9090".into())));
    }

    #[test]
    fn file_numbers_become_text_but_floats_are_refused() {
        let raw: Raw = serde_yaml_ng::from_str("http-port: 8080\n").unwrap();
        assert_eq!(raw.http_port, Some(Text("8080".into())));
        let err = serde_yaml_ng::from_str::<Raw>("tag: 1.10\n").unwrap_err();
        assert!(err.to_string().contains("quote"), "{err}");
    }

    #[test]
    fn machines_come_from_files_only_and_survive_the_site_record() {
        let raw = Raw::from_env(&|k| match k {
            "COZYBOOT_MACHINES" => Some("node1".into()),
            "COZYBOOT_TAG" => Some("v1".into()),
            _ => None,
        });
        // A variable cannot say it, and does not spoil the variables that can.
        assert_eq!((raw.machines, raw.tag), (None, Some(Text("v1".into()))));
        let raw: Raw = serde_yaml_ng::from_str(
            "machines:\n- hostname: srv1\n  mac: 52:54:00:aa:00:01\n  power: {driver: ipmi, host: bmc1, user: ADMIN, password-env: BMC_PW}\n",
        )
        .unwrap();
        let recorded: Raw = serde_json::from_value(serde_json::to_value(&raw).unwrap()).unwrap();
        assert_eq!(recorded, raw);
        // A MAC of digits only is still text (YAML 1.2: no base-60 integers).
        let digits: Raw = serde_yaml_ng::from_str("machines:\n- {hostname: a, mac: 52:54:00:11:00:01}\n").unwrap();
        assert_eq!(digits.machines.unwrap()[0].mac, Text("52:54:00:11:00:01".into()));
        let err = serde_yaml_ng::from_str::<Raw>("machines:\n- {hostname: a, mac: b, pwoer: {}}\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `pwoer`"), "{err}");
    }
}
