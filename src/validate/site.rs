//! `config.site-settings`: the settings of this run against those `up` recorded for the
//! site, so that `validate --tag v2` says it checked other settings than the ones running
//! instead of reporting drift everywhere without saying why.

use super::Check;
use crate::settings::{Settings, Source};
use crate::site::{self, Record};
use std::collections::{BTreeMap, BTreeSet};

pub const ID: &str = "config.site-settings";

pub fn check(s: &Settings, origins: &BTreeMap<String, Source>) -> Check {
    let file = site::record::file(&s.data_dir);
    let record = match site::load(&s.data_dir) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return Check::skip(
                ID,
                format!(
                    "no settings recorded for this site ({} does not exist; `up` writes it)",
                    file.display()
                ),
            )
        }
        Err(e) => {
            return Check::warn(ID, format!("the recorded settings cannot be read: {}", e.problem))
                .evidence(file.display().to_string())
                .fix(e.fix)
        }
    };
    let lines = differences(s, origins, &record);
    if lines.is_empty() {
        return Check::pass(
            ID,
            format!(
                "the settings are the {} `up` recorded for this site",
                record.effective.len()
            ),
        )
        .evidence(file.display().to_string());
    }
    Check::warn(
        ID,
        format!(
            "{} setting(s) differ from those `up` recorded for the running site, so the checks describe other settings than the ones it runs",
            lines.len()
        ),
    )
    .evidence_all(lines)
    .evidence(format!("recorded in {}", file.display()))
    .fix("to make these settings the site's, run `cozyboot up` with them; to check what runs, drop the settings that differ")
}

/// `tag: running v1 (recorded), given v2 (flag --tag)`, one line per setting that differs.
fn differences(s: &Settings, origins: &BTreeMap<String, Source>, record: &Record) -> Vec<String> {
    let now: BTreeMap<String, String> = s.describe().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let keys: BTreeSet<&String> = now.keys().chain(record.effective.keys()).collect();
    let shown = |v: Option<&String>| v.map_or("(not set)".to_string(), Clone::clone);
    keys.into_iter()
        .filter(|k| now.get(*k) != record.effective.get(*k))
        .map(|k| {
            let source = origins.get(k.as_str()).map_or("default".to_string(), |o| o.to_string());
            format!(
                "{k}: running {} (recorded), given {} ({source})",
                shown(record.effective.get(k)),
                shown(now.get(k))
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{self, net::FixedNet, Inputs, Purpose, Raw, Resolved};
    use crate::validate::Status;

    fn resolve(data_dir: &std::path::Path, tag: &str) -> Resolved {
        let flags: Raw = serde_json::from_value(serde_json::json!({
            "iface": "eth0", "data-dir": data_dir, "tag": tag,
        }))
        .unwrap();
        settings::resolve(Inputs {
            config_file: None,
            env: &|_| None,
            flags,
            host: &FixedNet(vec![("eth0".into(), vec!["10.20.13.140/24".parse().unwrap()])]),
            purpose: Purpose::Serve,
            site: &settings::no_site,
        })
        .unwrap()
    }

    #[test]
    fn skipped_without_a_record_passes_when_equal_warns_with_both_values_when_not() {
        let tmp = tempfile::tempdir().unwrap();
        let at_up = resolve(tmp.path(), "v1");
        assert_eq!(check(&at_up.settings, &at_up.origins).status, Status::Skip);

        site::record::save(&Record::of(&at_up, tmp.path())).unwrap();
        assert_eq!(check(&at_up.settings, &at_up.origins).status, Status::Pass);

        let given = resolve(tmp.path(), "v2");
        let c = check(&given.settings, &given.origins);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.finding.starts_with("1 setting(s) differ"), "{c:?}");
        assert_eq!(c.evidence[0], "tag: running v1 (recorded), given v2 (flag --tag)");
    }
}
