//! Containers: matchbox and dnsmasq exist, run, stay up, and run the images the settings name.

use super::{Check, Findings};
use crate::artifacts::image_ref::ImageRef;
use crate::engine::docker::{ContainerInfo, Engine, EngineError};
use crate::render::containers::Role;
use crate::settings::Settings;
use std::time::Duration;

/// A crash-looping container is "running" between restarts; two looks this far apart
/// catch a restart in progress. Other checks run inside the window, so it costs little.
pub const WINDOW: Duration = Duration::from_millis(800);
const LOG_LINES: usize = 5;

/// The containers as seen at the end of the window; other families read them.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub matchbox: Option<ContainerInfo>,
    pub dnsmasq: Option<ContainerInfo>,
}

impl Seen {
    pub fn get(&self, role: Role) -> Option<&ContainerInfo> {
        match role {
            Role::Matchbox => self.matchbox.as_ref(),
            Role::Dnsmasq => self.dnsmasq.as_ref(),
        }
    }
}

/// The first look of the window, taken before the other families run.
pub struct FirstLook {
    seen: Seen,
    at: tokio::time::Instant,
}

pub async fn first_look(s: &Settings, engine: &Engine) -> Result<FirstLook, EngineError> {
    Ok(FirstLook {
        seen: look(s, engine).await?,
        at: tokio::time::Instant::now(),
    })
}

/// Waits out what is left of the window, looks again, and judges both looks.
pub async fn checks(
    s: &Settings,
    engine: &Engine,
    engine_arch: &str,
    first: FirstLook,
) -> Result<(Vec<Check>, Seen), EngineError> {
    if first.seen.matchbox.is_some() || first.seen.dnsmasq.is_some() {
        tokio::time::sleep_until(first.at + WINDOW).await;
    }
    let first = first.seen;
    let second = look(s, engine).await?;
    let mut checks = Vec::new();
    for role in [Role::Matchbox, Role::Dnsmasq] {
        let expected = match role {
            Role::Matchbox => s.matchbox_image(),
            Role::Dnsmasq => s.dnsmasq_image_for(engine_arch),
        };
        let name = name_of(s, role);
        checks.push(running(engine, role, name, second.get(role)).await?);
        checks.push(restarts(engine, role, first.get(role), second.get(role)).await?);
        checks.push(image(engine, role, &expected, second.get(role)).await?);
    }
    Ok((checks, second))
}

fn name_of(s: &Settings, role: Role) -> &str {
    match role {
        Role::Matchbox => &s.names.matchbox,
        Role::Dnsmasq => &s.names.dnsmasq,
    }
}

async fn look(s: &Settings, engine: &Engine) -> Result<Seen, EngineError> {
    Ok(Seen {
        matchbox: engine.container(&s.names.matchbox).await?,
        dnsmasq: engine.container(&s.names.dnsmasq).await?,
    })
}

fn id(role: Role, what: &str) -> String {
    format!("containers.{}.{what}", role.name())
}

async fn running(engine: &Engine, role: Role, name: &str, c: Option<&ContainerInfo>) -> Result<Check, EngineError> {
    let id = id(role, "running");
    let Some(c) = c else {
        return Ok(
            Check::fail(&id, format!("there is no container named {name}")).fix(format!(
                "start it with `cozyboot up` (or pass the --{}-name it was given)",
                role.name()
            )),
        );
    };
    if c.running {
        return Ok(Check::pass(&id, format!("{name} is running")).evidence(format!(
            "status {}, started at {}",
            c.status,
            c.started_at.as_deref().unwrap_or("?")
        )));
    }
    let exit = c.exit_code.map(|e| format!(", exit code {e}")).unwrap_or_default();
    Ok(
        Check::fail(&id, format!("{name} is not running (status {}{exit})", c.status))
            .evidence_all(last_lines(engine, name).await?)
            .fix(format!(
                "read `docker logs {name}`, then start it again with `cozyboot up`"
            )),
    )
}

async fn restarts(
    engine: &Engine,
    role: Role,
    before: Option<&ContainerInfo>,
    after: Option<&ContainerInfo>,
) -> Result<Check, EngineError> {
    let id = id(role, "restarts");
    let (Some(before), Some(after)) = (before, after) else {
        return Ok(Check::skip(&id, "no container to watch"));
    };
    let window = format!("{:.1} s", WINDOW.as_secs_f64());
    let restarted = after.status == "restarting"
        || after.restart_count != before.restart_count
        || after.started_at != before.started_at;
    if restarted {
        return Ok(Check::fail(
            &id,
            format!(
                "{} is restarting: restart count {} → {} within {window}",
                after.name, before.restart_count, after.restart_count
            ),
        )
        .evidence_all(last_lines(engine, &after.name).await?)
        .fix(format!("read `docker logs {}` for why it exits", after.name)));
    }
    if !after.running {
        return Ok(Check::skip(&id, format!("{} is not running", after.name)));
    }
    Ok(Check::pass(
        &id,
        format!("stable over {window} (restart count {})", after.restart_count),
    ))
}

async fn image(engine: &Engine, role: Role, expected: &str, c: Option<&ContainerInfo>) -> Result<Check, EngineError> {
    let id = id(role, "image");
    let Some(c) = c else {
        return Ok(Check::skip(&id, "no container to inspect"));
    };
    let mut f = Findings::default();
    f.note(format!("{} runs {} ({})", c.name, c.image, short(&c.image_id)));
    if c.image != expected {
        f.fail(format!(
            "runs {}, but the settings name {expected}{}",
            c.image,
            differs_in(&c.image, expected)
        ));
    } else {
        match engine.image(expected).await? {
            Some(local) if local.id != c.image_id => f.warn(format!(
                "runs an older copy of {expected}: the tag now points to {}",
                short(&local.id)
            )),
            Some(_) => {}
            None => f.note(format!("{expected} is no longer in the engine's image cache")),
        }
    }
    let check = f.into_check(&id, format!("runs {expected}"));
    Ok(match check.status {
        super::Status::Pass => check,
        _ => check.fix("run `cozyboot up` with the same settings to recreate it from the expected image"),
    })
}

/// Names what part of two image references differs: the variant, the tag, the arch suffix.
fn differs_in(running: &str, expected: &str) -> String {
    let split = |r| {
        let parts = ImageRef::split(r);
        (parts.name, parts.tag_or_latest())
    };
    let (rn, rt) = split(running);
    let (en, et) = split(expected);
    let arch = |t: &str| ["-amd64", "-arm64"].into_iter().find(|a| t.ends_with(a));
    if rn != en {
        " (another repository: wrong variant or registry?)".into()
    } else if arch(rt) != arch(et) && arch(et).is_some() {
        format!(
            " (arch suffix {} instead of {})",
            arch(rt).unwrap_or("none"),
            arch(et).unwrap_or_default()
        )
    } else {
        format!(" (tag {rt} instead of {et})")
    }
}

async fn last_lines(engine: &Engine, name: &str) -> Result<Vec<String>, EngineError> {
    let text = engine.logs(name, Some(LOG_LINES)).await?;
    let lines: Vec<String> = text.lines().map(|l| format!("log: {l}")).collect();
    Ok(if lines.is_empty() {
        vec!["log: (empty)".into()]
    } else {
        lines
    })
}

fn short(id: &str) -> &str {
    let id = id.trim_start_matches("sha256:");
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_which_part_of_the_image_differs() {
        let base = "127.0.0.1:5000/p/talos/cozystack-spin-only/matchbox";
        assert_eq!(
            differs_in(&format!("{base}:v1"), &format!("{base}:v2")),
            " (tag v1 instead of v2)"
        );
        assert!(differs_in("r/talos/cozystack-spin-tailscale/matchbox:v1", &format!("{base}:v1")).contains("variant"));
        assert_eq!(
            differs_in(
                "quay.io/poseidon/dnsmasq:v0.5-arm64",
                "quay.io/poseidon/dnsmasq:v0.5-amd64"
            ),
            " (arch suffix -arm64 instead of -amd64)"
        );
    }
}
