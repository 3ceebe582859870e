//! Settings whose value is one of a few names (arch, variant, pull, log-level, matchbox-listen).
//!
//! Each such setting is described once, by its enum: the names shown in `--help` and shell
//! completions, and the spellings accepted. Flags, `COZYBOOT_*` and the config file all go
//! through [`Choice::parse`] in `settings::build`, so a spelling one source accepts is accepted
//! by the others, and a bad value gets the same error (naming its source) from each.

use crate::artifacts::arch::Arch;
use clap::builder::{PossibleValue, TypedValueParser};
use std::ffi::OsStr;
use std::str::FromStr;

pub trait Choice: Sized + Copy + 'static {
    /// What the values are, for messages: "unknown architecture".
    const WHAT: &'static str;
    /// Every value, in the order help lists them.
    const ALL: &'static [Self];

    /// The name shown in help, messages and the rendered output.
    fn name(self) -> &'static str;

    /// Other accepted spellings (`aarch64` for `arm64`), not listed in help.
    fn aliases(self) -> &'static [&'static str] {
        &[]
    }

    /// Accepts the name or an alias, ignoring ASCII case and surrounding blanks.
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name().eq_ignore_ascii_case(text) || c.aliases().iter().any(|a| a.eq_ignore_ascii_case(text)))
            .ok_or_else(|| format!("unknown {}", Self::WHAT))
    }

    /// The fix for a bad value: "use 'missing', 'always' or 'never'".
    fn fix() -> String {
        let names: Vec<String> = Self::ALL.iter().map(|c| format!("'{}'", c.name())).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("use {} or {last}", rest.join(", ")),
            _ => format!("use {}", names.join("")),
        }
    }
}

/// The clap value parser of a [`Choice`] flag: lists the names for help and completions but
/// passes the text on unchecked, so `settings::build` judges flags exactly as it judges the
/// environment and the config file.
pub fn value_parser<T: Choice>() -> ChoiceParser<T> {
    ChoiceParser(std::marker::PhantomData)
}

#[derive(Clone)]
pub struct ChoiceParser<T>(std::marker::PhantomData<T>);

impl<T: Choice + Send + Sync> TypedValueParser for ChoiceParser<T> {
    type Value = String;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(T::ALL.iter().map(|c| PossibleValue::new(c.name()))))
    }
}

impl Choice for Arch {
    const WHAT: &'static str = "architecture";
    const ALL: &'static [Self] = &Arch::ALL;

    fn name(self) -> &'static str {
        Arch::name(self)
    }

    /// The kernel's and Debian's spellings, as `uname -m` and `dpkg --print-architecture` say.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Arch::Arm64 => &["aarch64"],
            Arch::Amd64 => &["x86_64", "x86-64"],
        }
    }
}

impl FromStr for Arch {
    type Err = String;

    /// As a setting is parsed, with the value in the message (a `talos-nodes` entry shows
    /// its MAC address, not the architecture).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Arch as Choice>::parse(s).map_err(|problem| {
            let names: Vec<String> = Arch::ALL.iter().map(|a| format!("'{a}'")).collect();
            format!("{problem} '{}': cozyboot serves {}", s.trim(), names.join(" and "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{LogLevel, PullPolicy, Variant};

    #[test]
    fn names_and_aliases_are_accepted_in_any_case() {
        assert_eq!(Arch::parse(" AArch64 "), Ok(Arch::Arm64));
        assert_eq!(Arch::parse("x86-64"), Ok(Arch::Amd64));
        assert_eq!(Variant::parse("Spin-Tailscale"), Ok(Variant::SpinTailscale));
        assert_eq!(PullPolicy::parse("never"), Ok(PullPolicy::Never));
        assert_eq!(LogLevel::parse("warn"), Ok(LogLevel::Warn));
        assert_eq!(Arch::parse("ppc64"), Err("unknown architecture".to_string()));
    }

    #[test]
    fn the_fix_lists_every_name() {
        assert_eq!(Variant::fix(), "use 'spin-only' or 'spin-tailscale'");
        assert_eq!(PullPolicy::fix(), "use 'missing', 'always' or 'never'");
    }

    #[test]
    fn parses_common_spellings() {
        assert_eq!("aarch64".parse::<Arch>().unwrap(), Arch::Arm64);
        assert_eq!("x86_64".parse::<Arch>().unwrap(), Arch::Amd64);
        assert!("ppc64".parse::<Arch>().is_err());
    }
}
