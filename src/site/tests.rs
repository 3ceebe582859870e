//! Resolution against recorded sites: precedence, provenance, which site is meant.

use super::*;
use crate::error::exit;
use crate::settings::{self, net::FixedNet, Inputs, Purpose, Raw, Source};
use std::path::Path;

fn host() -> FixedNet {
    FixedNet(vec![("eth0".into(), vec!["10.20.13.140/24".parse().unwrap()])])
}

fn flags(pairs: &[(&str, &str)]) -> Raw {
    let mut map = serde_json::Map::new();
    for (k, v) in pairs {
        map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    serde_json::from_value(serde_json::Value::Object(map)).unwrap()
}

/// Resolves like the CLI does: `env` and `flags` given, sites found in `registry`.
fn resolve(
    registry: &Registry,
    config_file: Option<PathBuf>,
    env: &[(&str, &str)],
    flags: Raw,
) -> Result<Resolved, Error> {
    let env = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
    let find = |named: Option<&Path>| Ok(find(named, registry)?.map(|(dir, r)| r.layer(&dir)));
    settings::resolve(Inputs {
        config_file,
        env: &env,
        flags,
        host: &host(),
        purpose: Purpose::Serve,
        site: &find,
    })
}

/// What `up` does: resolve without any record, then record.
fn up(registry: &Registry, data_dir: &Path, extra: &[(&str, &str)]) -> Resolved {
    let dir = data_dir.display().to_string();
    let mut given = vec![("iface", "eth0"), ("data-dir", dir.as_str())];
    given.extend_from_slice(extra);
    let env = |_: &str| None;
    let resolved = settings::resolve(Inputs {
        config_file: None,
        env: &env,
        flags: flags(&given),
        host: &host(),
        purpose: Purpose::Serve,
        site: &settings::no_site,
    })
    .unwrap();
    assert_eq!(remember(&resolved, Path::new("/work/dir"), registry), None);
    resolved
}

struct Host {
    tmp: tempfile::TempDir,
    registry: Registry,
}

fn fresh() -> Host {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::at(tmp.path().join("sites"));
    Host { tmp, registry }
}

#[test]
fn no_recorded_site_resolves_as_before() {
    let h = fresh();
    let err = resolve(&h.registry, None, &[], Raw::default()).unwrap_err();
    assert_eq!(err.exit_code(), exit::CONFIG);
    assert!(err.to_string().contains("iface: no interface given"), "{err}");
}

#[test]
fn one_recorded_site_is_resolved_with_no_settings_at_all() {
    let h = fresh();
    let data = h.tmp.path().join("site-a");
    let at_up = up(
        &h.registry,
        &data,
        &[("tag", "v1.2.3"), ("dhcp-range", "10.20.13.150,10.20.13.200")],
    );
    let again = resolve(&h.registry, None, &[], Raw::default()).unwrap();
    assert_eq!(
        again.settings, at_up.settings,
        "the same site, from nothing but its record"
    );
    let site_file = data.join(".cozyboot/site.json");
    assert_eq!(again.site_file.as_deref(), Some(site_file.as_path()));
    assert_eq!(
        again.origins["tag"],
        Source::Site {
            file: site_file.clone(),
            given: Box::new(Source::Flag("--tag".into()))
        }
    );
    assert_eq!(
        again.origins["tag"].to_string(),
        format!("site ({}), first from flag --tag", site_file.display())
    );
    // A value nobody gave is still a default, not something the site decided.
    assert_eq!(again.origins["http-port"], Source::Default);
    // Derived values are derived again, from the host of the day.
    assert!(matches!(again.origins["server-ip"], Source::Derived(_)));
}

#[test]
fn file_env_and_flags_each_win_over_the_record() {
    let h = fresh();
    let data = h.tmp.path().join("site-a");
    up(
        &h.registry,
        &data,
        &[
            ("tag", "v1"),
            ("http-port", "8080"),
            ("log-level", "info"),
            ("registry", "mirror.lan/a"),
        ],
    );
    let config = h.tmp.path().join("cozyboot.yaml");
    std::fs::write(&config, "tag: v2\nhttp-port: \"9090\"\n").unwrap();
    let r = resolve(
        &h.registry,
        Some(config.clone()),
        &[("COZYBOOT_HTTP_PORT", "9191"), ("COZYBOOT_LOG_LEVEL", "debug")],
        flags(&[("log-level", "warn")]),
    )
    .unwrap();
    let s = &r.settings;
    assert_eq!(s.tag, "v2", "the file over the record");
    assert_eq!(r.origins["tag"], Source::File(config));
    assert_eq!(s.http_port, 9191, "the environment over the file and the record");
    assert_eq!(s.log_level, "warn", "a flag over everything");
    assert_eq!(
        s.registry, "mirror.lan/a",
        "what nothing else says comes from the record"
    );
    assert!(matches!(r.origins["registry"], Source::Site { .. }));
}

#[test]
fn several_sites_need_a_data_dir_and_the_error_lists_them() {
    let h = fresh();
    let (a, b) = (h.tmp.path().join("site-a"), h.tmp.path().join("site-b"));
    up(&h.registry, &a, &[("tag", "v1")]);
    up(&h.registry, &b, &[("tag", "v2"), ("http-port", "9090")]);
    let err = resolve(&h.registry, None, &[], Raw::default()).unwrap_err();
    assert_eq!(err.exit_code(), exit::CONFIG);
    let text = err.to_string();
    for expected in [
        "2 boot sites are recorded on this host",
        &a.display().to_string(),
        &b.display().to_string(),
        "iface eth0, spin-only v1, server http://10.20.13.140:8080",
        "spin-only v2, server http://10.20.13.140:9090",
        "fix: pick one with --data-dir",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }

    // Named by a flag or the environment, one of them is picked.
    let b_flag = flags(&[("data-dir", &b.display().to_string())]);
    assert_eq!(resolve(&h.registry, None, &[], b_flag).unwrap().settings.tag, "v2");
    let a_env = [("COZYBOOT_DATA_DIR", a.to_str().unwrap())];
    assert_eq!(
        resolve(&h.registry, None, &a_env, Raw::default()).unwrap().settings.tag,
        "v1"
    );
}

#[test]
fn a_named_data_dir_without_a_record_resolves_as_before() {
    let h = fresh();
    up(&h.registry, &h.tmp.path().join("site-a"), &[]);
    let other = flags(&[("data-dir", &h.tmp.path().join("elsewhere").display().to_string())]);
    let err = resolve(&h.registry, None, &[], other).unwrap_err();
    assert!(err.to_string().contains("iface: no interface given"), "{err}");
}

#[test]
fn a_listed_site_whose_record_is_gone_is_skipped() {
    let h = fresh();
    let (a, b) = (h.tmp.path().join("site-a"), h.tmp.path().join("site-b"));
    up(&h.registry, &a, &[("tag", "v1")]);
    up(&h.registry, &b, &[("tag", "v2")]);
    std::fs::remove_dir_all(&b).unwrap();
    assert_eq!(
        resolve(&h.registry, None, &[], Raw::default()).unwrap().settings.tag,
        "v1"
    );
}

#[test]
fn an_unreadable_record_is_an_error_naming_the_file() {
    let h = fresh();
    let a = h.tmp.path().join("site-a");
    up(&h.registry, &a, &[]);
    std::fs::write(a.join(".cozyboot/site.json"), "{ not json").unwrap();
    let named = flags(&[("data-dir", &a.display().to_string())]);
    let err = resolve(&h.registry, None, &[], named).unwrap_err();
    assert_eq!(err.exit_code(), exit::CONFIG);
    let text = err.to_string();
    assert!(text.contains("cannot read the recorded site settings"), "{text}");
    assert!(text.contains("site.json"), "{text}");
}

#[test]
fn relative_paths_are_recorded_absolute_against_where_up_ran() {
    let h = fresh();
    let data = h.tmp.path().join("site-a");
    let resolved = up(&h.registry, &data, &[]);
    let mut given = resolved.clone();
    given.raw.talos_config = Some("configs/worker.yaml".into());
    given.raw.ipxe_arm64 = Some(crate::settings::raw::Text("./ipxe.efi".into()));
    let record = Record::of(&given, Path::new("/work/dir"));
    assert_eq!(
        record.settings.talos_config,
        Some("/work/dir/configs/worker.yaml".into())
    );
    assert_eq!(
        record.settings.ipxe_arm64.map(|t| t.0),
        Some("/work/dir/./ipxe.efi".to_string())
    );
    assert_eq!(record.settings.data_dir, Some(data));
    assert_eq!(record.effective["iface"], "eth0");
}
