//! The settings a board can be given, each one of the Pi UEFI firmware's own setup-page
//! settings, and the variables they become.
//!
//! Names, types and values are the firmware's: edk2-platforms
//! `Platform/RaspberryPi/Drivers/ConfigDxe/ConfigDxeHii.vfr` (the setup pages; every
//! efivarstore there is NV+BS+RT under gConfigDxeFormSetGuid), `Platform/RaspberryPi/Include/
//! ConfigVars.h` (the values), `Platform/RaspberryPi/RPi4/RPi4.dsc` `[PcdsDynamicHii]` (the
//! variable each setting is read from and its default) and `Drivers/ConfigDxe/ConfigDxe.c`
//! (`SetupVariables`, `ApplyVariables`: what each does at boot).
//!
//! Left out on purpose: `RamMoreThan3GB` (ConfigDxe sets it itself from the RAM the board has),
//! `XhciPci` (forced to PCIe on a CM4), the clock's Max and Custom (PcdCpuMaxSpeedMHz is 2200:
//! an overclock), and the SD-card and display settings (no use to a netbooted board).

use super::guid::CONFIG_DXE_FORM_SET;
use super::store::{Variable, NV_BS_RT};
use serde::Serialize;

/// SYSTEM_TABLE_MODE_ACPI 0 / _BOTH 1 / _DT 2 (ConfigVars.h); RPi4.dsc's default is ACPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SystemTable {
    #[serde(rename = "acpi")]
    Acpi,
    #[serde(rename = "acpi+devicetree")]
    AcpiAndDevicetree,
    #[serde(rename = "devicetree")]
    Devicetree,
}

/// CHIPSET_CPU_CLOCK_LOW 0 / _DEFAULT 1 (ConfigVars.h): PcdCpuLowSpeedMHz 800, or the rate
/// the VideoCore firmware calls the board's maximum (1500 MHz on a CM4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuClock {
    Low,
    Default,
}

/// One board's settings; `None` leaves the firmware's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BoardSettings {
    /// `RamLimitTo3GB` = 0 when true (the default, 1, hides RAM above 3 GB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_above_3gb: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_table: Option<SystemTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_clock: Option<CpuClock>,
    /// `FanOnGpio`: 0 (off), 18 or 19, the only pins the setup page offers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fan_gpio: Option<u32>,
    /// `FanTemp`, in °C, 50 to 80.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fan_temperature: Option<u32>,
    /// `AssetTag`: up to 32 printable ASCII characters (SMBIOS type 3's asset tag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_tag: Option<String>,
}

/// One documented setting: its name in `rpi-nodes`, the values it takes, the firmware
/// variable it writes.
#[derive(Debug, Clone, Copy)]
pub struct SettingDoc {
    pub name: &'static str,
    pub values: &'static str,
    pub variable: &'static str,
}

pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        name: "ram-above-3gb",
        values: "true | false",
        variable: "RamLimitTo3GB (UINT32, 0 when true)",
    },
    SettingDoc {
        name: "system-table",
        values: "acpi | acpi+devicetree | devicetree",
        variable: "SystemTableMode (UINT32, 0 / 1 / 2)",
    },
    SettingDoc {
        name: "cpu-clock",
        values: "low | default",
        variable: "CpuClock (UINT32, 0 / 1)",
    },
    SettingDoc {
        name: "fan-gpio",
        values: "off | 18 | 19",
        variable: "FanOnGpio (UINT32, 0 / 18 / 19)",
    },
    SettingDoc {
        name: "fan-temperature",
        values: "50 to 80 (°C)",
        variable: "FanTemp (UINT32)",
    },
    SettingDoc {
        name: "asset-tag",
        values: "up to 32 printable ASCII characters",
        variable: "AssetTag (CHAR16[33])",
    },
];

/// What is wrong with one setting, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    pub problem: String,
    pub fix: String,
}

fn problem(problem: impl Into<String>, fix: impl Into<String>) -> SettingProblem {
    SettingProblem {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// ASSET_TAG_STR_STORAGE_SIZE (ConfigVars.h): 32 characters and the NUL.
const ASSET_TAG_CHARS: usize = 33;

impl BoardSettings {
    /// Sets `name` from its text, as written in YAML (`true`, `acpi`, `60`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SettingProblem> {
        let v = value.trim();
        match name {
            "ram-above-3gb" => {
                self.ram_above_3gb = Some(match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(problem("not true or false", "write ram-above-3gb: true (or false)")),
                })
            }
            "system-table" => {
                self.system_table = Some(match v {
                    "acpi" => SystemTable::Acpi,
                    "acpi+devicetree" => SystemTable::AcpiAndDevicetree,
                    "devicetree" => SystemTable::Devicetree,
                    _ => {
                        return Err(problem(
                            "not a system table mode the firmware has",
                            "write acpi, acpi+devicetree or devicetree",
                        ))
                    }
                })
            }
            "cpu-clock" => {
                self.cpu_clock = Some(match v {
                    "low" => CpuClock::Low,
                    "default" => CpuClock::Default,
                    "max" | "custom" => return Err(problem(
                        "the firmware's max and custom clocks go up to 2200 MHz, an overclock cozyboot does not set",
                        "write low or default (set an overclock at the board's screen if you mean it)",
                    )),
                    _ => return Err(problem("not a CPU clock the firmware has", "write low or default")),
                })
            }
            "fan-gpio" => {
                self.fan_gpio = Some(match v {
                    "off" | "0" => 0,
                    "18" => 18,
                    "19" => 19,
                    _ => {
                        return Err(problem(
                            "the firmware drives a fan on GPIO 18 or 19 only",
                            "write off, 18 or 19",
                        ))
                    }
                })
            }
            "fan-temperature" => {
                self.fan_temperature = Some(match v.parse::<u32>() {
                    Ok(t) if (50..=80).contains(&t) => t,
                    _ => {
                        return Err(problem(
                            "not a whole number from 50 to 80",
                            "write the °C the fan starts at, e.g. 60",
                        ))
                    }
                })
            }
            "asset-tag" => {
                if v.chars().count() > ASSET_TAG_CHARS - 1 || !v.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
                    return Err(problem(
                        "an asset tag is up to 32 printable ASCII characters",
                        "shorten it, or keep to letters, digits, spaces and punctuation",
                    ));
                }
                self.asset_tag = Some(v.to_string());
            }
            _ => {
                return Err(problem(
                    "the Pi UEFI firmware has no such setting (or cozyboot does not set it)",
                    format!(
                        "use one of: {}",
                        SETTINGS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == BoardSettings::default()
    }

    /// The variables these settings become, in the order of [`SETTINGS`].
    pub fn variables(&self) -> Vec<Variable> {
        let var = |name: &str, data: Vec<u8>| Variable {
            name: name.to_string(),
            vendor: CONFIG_DXE_FORM_SET,
            attributes: NV_BS_RT,
            data,
        };
        let u32v = |name: &str, value: u32| var(name, value.to_le_bytes().to_vec());
        let mut out = Vec::new();
        if let Some(above) = self.ram_above_3gb {
            out.push(u32v("RamLimitTo3GB", u32::from(!above)));
        }
        if let Some(mode) = self.system_table {
            let n = match mode {
                SystemTable::Acpi => 0,
                SystemTable::AcpiAndDevicetree => 1,
                SystemTable::Devicetree => 2,
            };
            out.push(u32v("SystemTableMode", n));
        }
        if let Some(clock) = self.cpu_clock {
            out.push(u32v("CpuClock", if clock == CpuClock::Low { 0 } else { 1 }));
        }
        if let Some(pin) = self.fan_gpio {
            out.push(u32v("FanOnGpio", pin));
        }
        if let Some(t) = self.fan_temperature {
            out.push(u32v("FanTemp", t));
        }
        if let Some(tag) = &self.asset_tag {
            // ConfigDxe reads the tag into a CHAR16[33] and rewrites the variable when it is
            // not there or does not fit, so it is written at exactly that size, NUL-padded.
            let mut units: Vec<u16> = tag.encode_utf16().collect();
            units.resize(ASSET_TAG_CHARS, 0);
            out.push(var("AssetTag", units.into_iter().flat_map(u16::to_le_bytes).collect()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_setting_is_accepted_and_becomes_one_variable() {
        let examples = [
            ("ram-above-3gb", "true"),
            ("system-table", "acpi+devicetree"),
            ("cpu-clock", "low"),
            ("fan-gpio", "19"),
            ("fan-temperature", "65"),
            ("asset-tag", "rack1-slot4"),
        ];
        assert_eq!(examples.len(), SETTINGS.len());
        let mut s = BoardSettings::default();
        for (name, value) in examples {
            s.set(name, value).unwrap();
        }
        let vars = s.variables();
        let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "RamLimitTo3GB",
                "SystemTableMode",
                "CpuClock",
                "FanOnGpio",
                "FanTemp",
                "AssetTag"
            ]
        );
        assert_eq!(vars[0].data, 0u32.to_le_bytes());
        assert_eq!(vars[1].data, 1u32.to_le_bytes());
        assert_eq!(vars[2].data, 0u32.to_le_bytes());
        assert_eq!(vars[3].data, 19u32.to_le_bytes());
        assert_eq!(vars[4].data, 65u32.to_le_bytes());
        assert_eq!(vars[5].data.len(), 66);
        assert!(vars
            .iter()
            .all(|v| v.attributes == 7 && v.vendor == CONFIG_DXE_FORM_SET));
    }

    #[test]
    fn values_the_firmware_lacks_or_that_overclock_are_refused() {
        let mut s = BoardSettings::default();
        assert!(s.set("ram-above-3gb", "yes").is_err());
        assert!(s.set("system-table", "dt").is_err());
        assert!(s.set("cpu-clock", "max").unwrap_err().problem.contains("2200"));
        assert!(s.set("fan-gpio", "17").is_err());
        assert!(s.set("fan-temperature", "90").is_err());
        assert!(s.set("asset-tag", &"x".repeat(33)).is_err());
        assert!(s.set("asset-tag", "tag\u{e9}").is_err());
        assert!(s.set("RamLimitTo3GB", "0").unwrap_err().fix.contains("ram-above-3gb"));
        assert!(s.is_empty());
    }

    #[test]
    fn ram_above_3gb_false_puts_the_limit_back() {
        let mut s = BoardSettings::default();
        s.set("ram-above-3gb", "false").unwrap();
        assert_eq!(s.variables()[0].data, 1u32.to_le_bytes());
    }
}
