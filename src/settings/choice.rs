//! Settings whose value is one of a few names (arch, variant, pull, log-level, matchbox-listen).
//!
//! Each such setting is described once, by its enum: the names shown in `--help` and shell
//! completions, and the spellings accepted. Flags, `COZYBOOT_*` and the config file all go
//! through [`Choice::parse`] in `settings::build`, so a spelling one source accepts is accepted
//! by the others, and a bad value gets the same error (naming its source) from each.

use clap::builder::{PossibleValue, TypedValueParser};
use std::ffi::OsStr;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::error::{ConfigError, Error};
    use crate::settings::net::FixedNet;
    use crate::settings::{raw, Inputs, LogLevel, MatchboxListen, PullPolicy, Purpose, Source, Variant};

    #[test]
    fn names_and_aliases_are_accepted_in_any_case() {
        assert_eq!(Arch::parse(" AArch64 "), Ok(Arch::Arm64));
        assert_eq!(Arch::parse("x86-64"), Ok(Arch::Amd64));
        assert_eq!(Variant::parse("Spin-Tailscale"), Ok(Variant::SpinTailscale));
        assert_eq!(PullPolicy::parse("never"), Ok(PullPolicy::Never));
        assert_eq!(LogLevel::parse("warn"), Ok(LogLevel::Warn));
        assert_eq!(Arch::parse("ppc64"), Err("unknown architecture".to_string()));
    }

    /// One setting given by one source (`flag`, `env` or `file`), resolved as `render` does:
    /// the flag through the real clap parser.
    fn resolve_from(source: &str, key: &str, value: &str) -> Result<crate::settings::Settings, Vec<ConfigError>> {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec!["cozyboot".to_string(), "render".into(), "--server-ip=10.0.0.2".into()];
        argv.extend(["--subnet=10.0.0.0/24".into(), "--iface=eth0".into()]);
        let mut env = Vec::new();
        let mut config_file = None;
        match source {
            "flag" => argv.push(format!("--{key}={value}")),
            "env" => env.push((raw::env_name(&key.replace('-', "_")), value.to_string())),
            "file" => {
                let path = dir.path().join("cozyboot.yaml");
                // `arch` is a list in the file (`arch: [arm64]`), as the README shows it.
                let yaml = match key {
                    "arch" => format!("{key}: ['{value}']\n"),
                    _ => format!("{key}: '{value}'\n"),
                };
                std::fs::write(&path, yaml).unwrap();
                config_file = Some(path);
            }
            other => panic!("{other}"),
        }
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("clap refused {argv:?}: {e}"));
        let Command::Render(args) = cli.command else {
            unreachable!()
        };
        let env = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let resolved = crate::settings::resolve(Inputs {
            config_file,
            env: &env,
            flags: args.settings.to_raw(),
            host: &FixedNet(vec![]),
            purpose: Purpose::Render,
            site: &crate::settings::no_site,
        });
        match resolved {
            Ok(r) => Ok(r.settings),
            Err(Error::Config(errors)) => Err(errors),
            Err(e) => panic!("{e}"),
        }
    }

    fn value_of(s: &crate::settings::Settings, key: &str) -> String {
        s.describe().into_iter().find(|(k, _)| *k == key).unwrap().1
    }

    fn spellings<T: Choice>() -> Vec<(&'static str, T)> {
        T::ALL
            .iter()
            .flat_map(|c| {
                std::iter::once(c.name())
                    .chain(c.aliases().iter().copied())
                    .map(|s| (s, *c))
            })
            .collect()
    }

    #[test]
    fn flags_environment_and_file_accept_the_same_spellings() {
        let mut cases: Vec<(&str, &str, &str)> = Vec::new();
        cases.extend(spellings::<Arch>().into_iter().map(|(s, c)| ("arch", s, c.name())));
        cases.extend(
            spellings::<Variant>()
                .into_iter()
                .map(|(s, c)| ("variant", s, c.name())),
        );
        cases.extend(
            spellings::<PullPolicy>()
                .into_iter()
                .map(|(s, c)| ("pull", s, c.name())),
        );
        cases.extend(
            spellings::<LogLevel>()
                .into_iter()
                .map(|(s, c)| ("log-level", s, c.name())),
        );
        cases.extend(
            spellings::<MatchboxListen>()
                .into_iter()
                .map(|(s, c)| ("matchbox-listen", s, c.name())),
        );
        assert!(cases.contains(&("arch", "aarch64", "arm64")));
        for (key, spelling, meant) in cases {
            for source in ["flag", "env", "file"] {
                let settings = resolve_from(source, key, spelling)
                    .unwrap_or_else(|e| panic!("{key}={spelling} from {source}: {e:?}"));
                assert_eq!(value_of(&settings, key), meant, "{key}={spelling} from {source}");
            }
        }
    }

    #[test]
    fn a_bad_value_gets_the_same_error_from_flags_environment_and_file() {
        for (key, bad) in [
            ("arch", "ppc64"),
            ("variant", "spin-all"),
            ("pull", "sometimes"),
            ("log-level", "loud"),
            ("matchbox-listen", "0.0.0.0"),
        ] {
            let errors: Vec<ConfigError> = ["flag", "env", "file"]
                .into_iter()
                .map(|source| {
                    let mut errors = resolve_from(source, key, bad).expect_err(bad);
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    errors.remove(0)
                })
                .collect();
            let sources: Vec<_> = errors.iter().map(|e| e.source.clone()).collect();
            assert!(matches!(sources[0], Some(Source::Flag(_))), "{sources:?}");
            assert!(matches!(sources[1], Some(Source::Env(_))), "{sources:?}");
            assert!(matches!(sources[2], Some(Source::File(_))), "{sources:?}");
            let what = |e: &ConfigError| (e.field.clone(), e.value.clone(), e.problem.clone(), e.fix.clone());
            assert_eq!(what(&errors[0]), what(&errors[1]), "{key}");
            assert_eq!(what(&errors[0]), what(&errors[2]), "{key}");
            assert_eq!(errors[0].value.as_deref(), Some(bad));
            assert!(errors[0].problem.starts_with("unknown "), "{:?}", errors[0]);
            assert!(errors[0].fix.starts_with("use "), "{:?}", errors[0]);
        }
    }

    #[test]
    fn the_fix_lists_every_name() {
        assert_eq!(Variant::fix(), "use 'spin-only' or 'spin-tailscale'");
        assert_eq!(PullPolicy::fix(), "use 'missing', 'always' or 'never'");
    }
}
