//! `config.talos-config-exposure`: the Talos machine configs matchbox hands to anyone who
//! asks. `/generic` has no authentication and plain HTTP has no secrecy; a group's MAC or
//! uuid selector is no protection, since both are easily spoofed. What shrinks the exposure
//! is withdrawal (see [`crate::store::withdrawal`]): `cozyboot nodes` takes a config out
//! once its machine has it.

use super::Check;
use crate::journey::clock;
use crate::settings::Settings;
use crate::store::withdrawal::{self, Given, Record};

pub const ID: &str = "config.talos-config-exposure";

pub fn check(s: &Settings) -> Check {
    let record = match Record::load(&s.data_dir) {
        Ok(r) => r,
        Err(e) => {
            return Check::fail(ID, "the record of withdrawn Talos configs cannot be read").evidence(e.to_string())
        }
    };
    let given = withdrawal::given(s, &record);
    if given.is_empty() {
        return Check::pass(
            ID,
            "no Talos config is served: machines boot maintenance mode and get theirs from `talosctl apply-config --insecure`",
        );
    }
    let (withdrawn, served): (Vec<&Given>, Vec<&Given>) = given.iter().partition(|g| g.withdrawn.is_some());
    let evidence = served
        .iter()
        .map(|g| {
            format!(
                "served: {} (for {}) at {}/generic",
                g.file.display(),
                g.whom(),
                s.http_base()
            )
        })
        .chain(withdrawn.iter().filter_map(|g| {
            let w = g.withdrawn.as_ref()?;
            Some(format!(
                "withdrawn: {} (for {}): {} took it, {}",
                g.file.display(),
                g.whom(),
                w.mac,
                clock::format_rfc3339(i64::try_from(w.at).unwrap_or(i64::MAX))
            ))
        }))
        .collect::<Vec<_>>();
    if served.is_empty() {
        return Check::pass(
            ID,
            format!(
                "every Talos config ({}) was withdrawn once its machine took it",
                withdrawn.len()
            ),
        )
        .evidence_all(evidence);
    }
    Check::warn(
        ID,
        format!(
            "{} Talos machine config(s), with the cluster's keys, are served over plain HTTP to anyone on the network who asks (MAC and uuid selectors are easily spoofed)",
            served.len()
        ),
    )
    .evidence_all(evidence)
    .fix("`cozyboot nodes` withdraws each config once its machine took it and Talos answers (run it, e.g. `--wait N --stage talos`, while the machines boot); or serve none and configure maintenance-mode nodes with `talosctl apply-config --insecure`")
}
