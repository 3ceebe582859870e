//! Starting, health-checking and replacing the two containers: new before old, old back
//! on failure.
//!
//! The rules, each held by a test in `apply::tests`:
//! - A replacement creates `<name>-cozyboot-new` beside the running container, stops the old
//!   one, renames it `<name>-cozyboot-old`, gives the new one the name and starts it.
//! - The old containers are removed only when every container of the run is healthy and
//!   has stayed up for the settle time. Until then any failure, of this container or a later
//!   one, puts every old container back under its name and starts those that ran, in plan
//!   order (matchbox before a dnsmasq that joins its network namespace by container id:
//!   removing the old matchbox early would leave the old dnsmasq nothing to join).
//! - A failed rollback step never replaces the error that caused the rollback; it is added.
//! - A `<name>-cozyboot-old` found by the next run is the last container known to be good
//!   (a rollback could not finish): it is put back under its name and started before
//!   planning, never removed as a leftover.

use super::{spec_for, Context};
use crate::engine::ContainerEngine;
use crate::error::Error;
use crate::host::reach::{AskMatchbox, Vantage};
use crate::plan::Observed;
use crate::render::container_spec::NetworkMode;
use crate::render::containers::Role;
use std::time::Duration;
use tokio::time::Instant;

const DNSMASQ_STARTED: &str = "started, version";
/// What matchbox logs once its HTTP listener is up.
const MATCHBOX_STARTED: &str = "Starting matchbox HTTP server";

/// How long each step of a container's start may take, and how often it is looked at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub stop: Duration,
    pub start: Duration,
    /// The first look after a start; each further look waits twice as long, up to `max_poll`.
    pub first_poll: Duration,
    pub max_poll: Duration,
    /// A process that answers once and then dies is still a crash: it must still run this
    /// long after it was healthy. The windows of the containers of one run overlap.
    pub settle: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            stop: Duration::from_secs(10),
            start: Duration::from_secs(20),
            first_poll: Duration::from_millis(10),
            max_poll: Duration::from_millis(100),
            settle: Duration::from_millis(300),
        }
    }
}

/// The containers this run created or replaced, in plan order.
#[derive(Debug, Default)]
pub(super) struct Swaps(Vec<Swap>);

#[derive(Debug)]
struct Swap {
    name: String,
    /// The current name of the container this run created, while it exists.
    new_at: Option<String>,
    /// The container it replaces, if any.
    old: Option<Old>,
    /// When the new container, healthy, has been up long enough (see [`Timing::settle`]).
    settled_at: Option<Instant>,
}

#[derive(Debug)]
struct Old {
    /// Its current name.
    at: String,
    was_running: bool,
    /// Whether this run (tried to) stop it.
    stopped: bool,
}

/// Creates and starts a container where there was none.
pub(super) async fn create<E: AskMatchbox>(
    cx: &Context<'_, E>,
    role: Role,
    swaps: &mut Swaps,
) -> Result<Checked, Error> {
    let spec = spec_for(cx, role);
    cx.engine.create(spec).await?;
    swaps.0.push(Swap {
        name: spec.name.clone(),
        new_at: Some(spec.name.clone()),
        old: None,
        settled_at: None,
    });
    let (checked, settled_at) = start_and_wait(cx, role, &spec.name).await?;
    if let Some(swap) = swaps.0.last_mut() {
        swap.settled_at = Some(settled_at);
    }
    Ok(checked)
}

/// Creates the new container beside the old, stops the old, moves it aside and starts the
/// new one under the name. On failure the caller rolls back with [`roll_back`], which knows
/// from `swaps` how far this got.
pub(super) async fn replace<E: AskMatchbox>(
    cx: &Context<'_, E>,
    role: Role,
    observed: &Observed,
    swaps: &mut Swaps,
) -> Result<Checked, Error> {
    let spec = spec_for(cx, role);
    let engine = cx.engine;
    let name = spec.name.as_str();
    let new_name = format!("{name}-cozyboot-new");
    let old_name = format!("{name}-cozyboot-old");
    // Never started under this name, so never a container that served anyone.
    if engine.container(&new_name).await?.is_some() {
        engine.remove(&new_name, true).await?;
    }
    let was_running = observed.containers.get(name).is_some_and(|c| c.running);
    let mut staged = spec.clone();
    staged.name = new_name.clone();
    let replacing = |e: crate::engine::EngineError| Error::Failed(format!("replacing {name}: {e}"));
    engine.create(&staged).await.map_err(replacing)?;
    swaps.0.push(Swap {
        name: name.to_string(),
        new_at: Some(new_name.clone()),
        old: Some(Old {
            at: name.to_string(),
            was_running,
            stopped: false,
        }),
        settled_at: None,
    });
    let i = swaps.0.len() - 1;
    if let Some(old) = &mut swaps.0[i].old {
        // Marked first: a stop that fails half-way may still have stopped it.
        old.stopped = true;
    }
    engine.stop(name, cx.timing.stop).await.map_err(replacing)?;
    engine.rename(name, &old_name).await.map_err(replacing)?;
    if let Some(old) = &mut swaps.0[i].old {
        old.at = old_name.clone();
    }
    engine.rename(&new_name, name).await.map_err(replacing)?;
    swaps.0[i].new_at = Some(name.to_string());
    let (checked, settled_at) = start_and_wait(cx, role, name)
        .await
        .map_err(|e| Error::Failed(format!("the new {name} failed to start: {e}")))?;
    swaps.0[i].settled_at = Some(settled_at);
    Ok(checked)
}

/// The second look: every container started by this run is still running once its settle
/// time has passed (the windows overlap, so the run waits for the last one only).
pub(super) async fn settle<E: ContainerEngine>(cx: &Context<'_, E>, swaps: &Swaps) -> Result<(), Error> {
    for swap in &swaps.0 {
        if let (Some(at), Some(name)) = (swap.settled_at, &swap.new_at) {
            tokio::time::sleep_until(at).await;
            still_running(cx, name).await?;
        }
    }
    Ok(())
}

/// Everything is healthy: the old containers go. One that cannot be removed is only a
/// warning (the site runs); the next run puts it back and replaces it again (it cannot
/// tell a stale old container from the last good one, so it assumes the latter).
pub(super) async fn finish<E: ContainerEngine>(cx: &Context<'_, E>, swaps: Swaps) -> Vec<String> {
    let mut warnings = Vec::new();
    for swap in swaps.0 {
        if let Some(old) = swap.old {
            if let Err(e) = cx.engine.remove(&old.at, true).await {
                warnings.push(format!(
                    "the new {} runs, but the previous container ({}) could not be removed: {e}\n  fix: remove it (`docker rm -f {}`); else the next `cozyboot up` puts it back and replaces it again",
                    swap.name, old.at, old.at
                ));
            }
        }
    }
    warnings
}

/// Puts the previous containers back under their names and starts those that ran, in plan
/// order; removes the containers this run created. Returns what was done, then what failed.
pub(super) async fn roll_back<E: ContainerEngine>(cx: &Context<'_, E>, swaps: Swaps) -> (Vec<String>, Vec<String>) {
    let engine = cx.engine;
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    // Names first, for every container, so a dnsmasq that joins matchbox's namespace by
    // name finds the previous matchbox when it starts.
    let mut back = vec![false; swaps.0.len()];
    for (i, swap) in swaps.0.iter().enumerate().rev() {
        if let Some(at) = &swap.new_at {
            if let Err(e) = engine.remove(at, true).await {
                failed.push(format!("removing the new {} ({at}): {e}", swap.name));
                continue;
            }
        }
        match &swap.old {
            Some(old) if old.at != swap.name => match engine.rename(&old.at, &swap.name).await {
                Ok(()) => back[i] = true,
                Err(e) => failed.push(format!(
                    "renaming {} back to {}: {e}; it is kept under that name, and the next `cozyboot up` puts it back",
                    old.at, swap.name
                )),
            },
            Some(_) => back[i] = true,
            None => done.push(format!("{}, created by this run, was removed", swap.name)),
        }
    }
    let mut matchbox_restarted = false;
    for (i, swap) in swaps.0.iter().enumerate() {
        let Some(old) = &swap.old else { continue };
        if !back[i] {
            continue;
        }
        if !(old.was_running && old.stopped) {
            if !old.was_running {
                done.push(format!("the previous {} was put back (it was not running)", swap.name));
            }
            continue;
        }
        match engine.start(&swap.name).await {
            Ok(()) => {
                matchbox_restarted |= swap.name == cx.specs[0].name;
                done.push(format!("the previous {} was started again", swap.name));
            }
            Err(e) => failed.push(format!("starting the previous {} again: {e}", swap.name)),
        }
    }
    let dnsmasq = &cx.specs[1];
    let dnsmasq_swapped = swaps.0.iter().any(|s| s.name == dnsmasq.name);
    if matchbox_restarted && !dnsmasq_swapped && matches!(dnsmasq.network, NetworkMode::Container(_)) {
        // It lost its network when matchbox stopped; a restart joins the matchbox running now.
        let rejoined = async {
            engine.stop(&dnsmasq.name, cx.timing.stop).await?;
            engine.start(&dnsmasq.name).await
        };
        if let Err(e) = rejoined.await {
            failed.push(format!(
                "restarting {} into matchbox's network again: {e}",
                dnsmasq.name
            ));
        }
    }
    (done, failed)
}

/// Puts a `<name>-cozyboot-old` left by an unfinished rollback back under its name and
/// starts it (see the module's rules): whatever holds the name then is a replacement that
/// was never confirmed healthy. The plan then replaces it again, with the old one to fall
/// back on. `true` when anything was changed.
pub(super) async fn recover<E: ContainerEngine>(cx: &Context<'_, E>) -> Result<bool, Error> {
    let engine = cx.engine;
    let mut changed = false;
    for spec in &cx.specs {
        let name = spec.name.as_str();
        let Some(old) = engine.container(&format!("{name}-cozyboot-old")).await? else {
            continue;
        };
        if let Some(current) = engine.container(name).await? {
            engine.remove(&current.id, true).await?;
        }
        engine.rename(&old.id, name).await?;
        // A failed start leaves it stopped, which the plan replaces ("not running").
        let _ = engine.start(name).await;
        changed = true;
    }
    Ok(changed)
}

/// Starts the container and waits until it shows its health signal — matchbox answers
/// `GET /` with `matchbox`, dnsmasq logs its start line. A crash at any point fails at once,
/// with the container's last log lines. Returns how it was checked and when its settle time
/// is over ([`settle`] looks again then).
///
/// matchbox is asked from where its address can really be reached (see [`crate::host::reach`]):
/// from this host, or from inside its own network namespace. When neither is possible its
/// start-up log line stands in, and the answer says that HTTP was not checked.
async fn start_and_wait<E: AskMatchbox>(
    cx: &Context<'_, E>,
    role: Role,
    name: &str,
) -> Result<(Checked, Instant), Error> {
    let timing = cx.timing;
    cx.engine.start(name).await?;
    let vantage = match role {
        Role::Matchbox => Some(cx.engine.matchbox_vantage(cx.s, name).await?),
        Role::Dnsmasq => None,
    };
    let deadline = Instant::now() + timing.start;
    let mut poll = timing.first_poll;
    let mut waiting_for;
    loop {
        still_running(cx, name).await?;
        waiting_for = match healthy(cx, name, vantage.as_ref()).await? {
            None => break,
            Some(why) => why,
        };
        if Instant::now() >= deadline {
            let secs = timing.start.as_secs_f64();
            return Err(with_logs(
                cx,
                name,
                format!("{name} did not become healthy within {secs} s: {waiting_for}"),
            )
            .await);
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(timing.max_poll);
    }
    let checked = match vantage {
        Some(Vantage::InContainer { why, .. }) => Checked::FromInside(why),
        Some(Vantage::Nowhere { why, fix }) => Checked::NotOverHttp(format!(
            "{name} runs and logged `{MATCHBOX_STARTED}`, but its HTTP answer could not be checked from this host: {why}\n  fix: {fix}"
        )),
        _ => Checked::Here,
    };
    Ok((checked, Instant::now() + timing.settle))
}

/// How a started container's health was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Checked {
    /// From this host (or by dnsmasq's log).
    Here,
    /// matchbox answered inside its own network namespace; says why not from here.
    FromInside(String),
    /// matchbox's HTTP answer could not be checked: a warning saying why, with the fix.
    NotOverHttp(String),
}

impl Checked {
    /// What the `done` line adds, and the warning, if any.
    pub(super) fn report(self) -> (String, Option<String>) {
        match self {
            Checked::Here => (String::new(), None),
            Checked::FromInside(why) => (
                format!(" (health checked from inside its network namespace: {why})"),
                None,
            ),
            Checked::NotOverHttp(warning) => (" (HTTP not checked)".into(), Some(warning)),
        }
    }
}

/// `None` when healthy, else what is still missing. `vantage` is where matchbox is asked
/// from; dnsmasq (`None`) is judged by its log.
async fn healthy<E: AskMatchbox>(
    cx: &Context<'_, E>,
    name: &str,
    vantage: Option<&Vantage>,
) -> Result<Option<String>, Error> {
    let started = |line: &'static str| async move {
        let logs = cx.engine.logs(name, Some(200)).await?;
        Ok::<_, Error>((!logs.contains(line)).then(|| format!("{name} has not logged `{line}`")))
    };
    Ok(match vantage {
        None => started(DNSMASQ_STARTED).await?,
        Some(Vantage::Nowhere { .. } | Vantage::Stopped { .. }) => started(MATCHBOX_STARTED).await?,
        Some(vantage) => {
            let url = format!("{}/", cx.s.http_base());
            let asked = url.clone();
            let from = match vantage {
                Vantage::InContainer { .. } => format!(" (from inside {name}'s network namespace)"),
                _ => String::new(),
            };
            match cx.engine.ask_matchbox(vantage, asked).await {
                Ok(answer) => answer.map(|why| format!("{why}{from}")),
                Err(e) => Some(format!("GET {url}{from}: {e}")),
            }
        }
    })
}

/// Fails when the container exited or was restarted by its restart policy (a crash loop).
async fn still_running<E: ContainerEngine>(cx: &Context<'_, E>, name: &str) -> Result<(), Error> {
    let c = cx.engine.container(name).await?;
    match c {
        Some(c) if c.running && c.status != "restarting" && c.restart_count == 0 => Ok(()),
        Some(c) => {
            let exit = c.exit_code.map(|e| format!(", exit code {e}")).unwrap_or_default();
            let restarts = if c.restart_count > 0 {
                format!(", restarted {} time(s)", c.restart_count)
            } else {
                String::new()
            };
            Err(with_logs(
                cx,
                name,
                format!("{name} crashed (status {}{exit}{restarts})", c.status),
            )
            .await)
        }
        None => Err(Error::Failed(format!("{name} disappeared while starting"))),
    }
}

async fn with_logs<E: ContainerEngine>(cx: &Context<'_, E>, name: &str, problem: String) -> Error {
    let logs = cx.engine.logs(name, Some(20)).await.unwrap_or_default();
    Error::Failed(format!("{problem}; last log lines of {name}:\n{}", indent(&logs)))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
}
