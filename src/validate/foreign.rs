//! Hand-made files in the matchbox tree: a group cozyboot did not write that can take a
//! machine cozyboot serves (see [`crate::store::hand_made`]).

use super::Check;
use crate::render::Rendered;
use crate::settings::Settings;
use crate::store::hand_made;

const ID: &str = "config.foreign-groups";

pub fn check(s: &Settings, rendered: &Rendered) -> Check {
    let ours: Vec<String> = rendered.files().into_iter().map(|f| f.path).collect();
    let found = hand_made::scan(&s.data_dir, &ours, &rendered.tree.groups);
    let fix = "`cozyboot up --move-foreign` moves every file cozyboot did not write into <data-dir>/.cozyboot/moved-<date>/; or remove those groups";
    let listing = |c: Check| {
        found.files.iter().fold(c, |c, f| {
            c.evidence(format!("not written by cozyboot: {}", s.data_dir.join(f).display()))
        })
    };
    if !found.competitors.is_empty() {
        let mut c = Check::fail(
            ID,
            format!(
                "{} group(s) cozyboot did not write can take machines from cozyboot's groups",
                found.competitors.len()
            ),
        );
        for competitor in &found.competitors {
            c = c.evidence(competitor.describe());
        }
        return listing(c).fix(fix);
    }
    if !found.unreadable.is_empty() {
        let c = Check::fail(
            ID,
            format!(
                "{} is not valid group JSON: matchbox refuses to start with it",
                found.unreadable.join(", ")
            ),
        );
        return listing(c).fix(fix);
    }
    if found.files.is_empty() {
        return Check::pass(ID, "the matchbox tree holds only what cozyboot wrote");
    }
    listing(Check::pass(
        ID,
        format!(
            "{} file(s) cozyboot did not write; none of their groups competes with cozyboot's",
            found.files.len()
        ),
    ))
}
