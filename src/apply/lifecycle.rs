//! Starting, health-checking and replacing the two containers: new before old, old back
//! on failure.

use super::{spec_for, Context};
use crate::engine::spec::NetworkMode;
use crate::error::Error;
use crate::plan::Observed;
use crate::render::containers::Role;
use std::time::Duration;

const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const DNSMASQ_STARTED: &str = "started, version";

/// How often a starting container is looked at.
const POLL: Duration = Duration::from_millis(100);
/// A process that answers once and then dies is still a crash: look again after this long.
const SETTLE: Duration = Duration::from_millis(300);

/// Starts the container and waits until it shows its health signal — matchbox answers
/// `GET /` with `matchbox`, dnsmasq logs its start line — and is still running a moment later.
/// A crash at any point fails at once, with the container's last log lines.
pub(super) async fn start_and_wait(cx: &Context<'_>, role: Role, name: &str) -> Result<(), Error> {
    cx.engine.start(name).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .map_err(|e| Error::Failed(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut waiting_for;
    loop {
        still_running(cx, name).await?;
        waiting_for = match healthy(cx, role, name, &client).await? {
            None => break,
            Some(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            let secs = START_TIMEOUT.as_secs();
            return Err(with_logs(
                cx,
                name,
                format!("{name} did not become healthy within {secs} s: {waiting_for}"),
            )
            .await);
        }
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(SETTLE).await;
    still_running(cx, name).await
}

/// `None` when healthy, else what is still missing.
async fn healthy(cx: &Context<'_>, role: Role, name: &str, client: &reqwest::Client) -> Result<Option<String>, Error> {
    Ok(match role {
        Role::Matchbox => {
            let url = format!("{}/", cx.s.http_base());
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    let body = r.text().await.unwrap_or_default();
                    (body.trim() != "matchbox").then(|| format!("GET {url} answered {body:?}, not `matchbox`"))
                }
                Ok(r) => Some(format!("GET {url} answered HTTP {}", r.status())),
                Err(e) => Some(format!("GET {url}: {e}")),
            }
        }
        Role::Dnsmasq => {
            let logs = cx.engine.logs(name, Some(200)).await?;
            (!logs.contains(DNSMASQ_STARTED)).then(|| format!("dnsmasq has not logged `{DNSMASQ_STARTED}`"))
        }
    })
}

/// Fails when the container exited or was restarted by its restart policy (a crash loop).
async fn still_running(cx: &Context<'_>, name: &str) -> Result<(), Error> {
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

async fn with_logs(cx: &Context<'_>, name: &str, problem: String) -> Error {
    let logs = cx.engine.logs(name, Some(20)).await.unwrap_or_default();
    Error::Failed(format!("{problem}; last log lines of {name}:\n{}", indent(&logs)))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
}

/// Creates the new container beside the old, stops the old, starts the new; if the new one
/// does not come up, it is removed and the old one is put back and started again.
pub(super) async fn replace(cx: &Context<'_>, role: Role, observed: &Observed) -> Result<(), Error> {
    let spec = spec_for(cx, role);
    let engine = cx.engine;
    let name = spec.name.as_str();
    let new_name = format!("{name}-cozyboot-new");
    let old_name = format!("{name}-cozyboot-old");
    for leftover in [&new_name, &old_name] {
        if engine.container(leftover).await?.is_some() {
            engine.remove(leftover, true).await?;
        }
    }
    let was_running = observed.containers.get(name).is_some_and(|c| c.running);
    let mut staged = spec.clone();
    staged.name = new_name.clone();
    engine.create(&staged).await?;

    engine.stop(name, STOP_TIMEOUT).await?;
    engine.rename(name, &old_name).await?;
    engine.rename(&new_name, name).await?;
    match start_and_wait(cx, role, name).await {
        Ok(()) => {
            engine.remove(&old_name, true).await?;
            Ok(())
        }
        Err(e) => {
            let _ = engine.remove(name, true).await;
            engine.rename(&old_name, name).await?;
            let restored = if was_running {
                match engine.start(name).await {
                    Ok(()) => {
                        rejoin_dnsmasq(cx, role).await;
                        "the previous container was started again".to_string()
                    }
                    Err(e2) => format!("starting the previous container again failed too: {e2}"),
                }
            } else {
                "the previous container was put back (it was not running)".to_string()
            };
            Err(Error::Failed(format!(
                "the new {name} failed to start: {e}\n  {restored}"
            )))
        }
    }
}

/// A dnsmasq sharing matchbox's network namespace lost its network when matchbox stopped;
/// restarting it joins the namespace of the matchbox that runs now.
async fn rejoin_dnsmasq(cx: &Context<'_>, role: Role) {
    let dnsmasq = &cx.specs[1];
    if role == Role::Matchbox && matches!(dnsmasq.network, NetworkMode::Container(_)) {
        let _ = cx.engine.stop(&dnsmasq.name, STOP_TIMEOUT).await;
        let _ = cx.engine.start(&dnsmasq.name).await;
    }
}
