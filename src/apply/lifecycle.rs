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

pub(super) async fn start_and_wait(cx: &Context<'_>, role: Role, name: &str) -> Result<(), Error> {
    cx.engine.start(name).await?;
    cx.engine.wait_running(name, START_TIMEOUT).await?;
    match role {
        Role::Matchbox => wait_matchbox(cx, name).await,
        Role::Dnsmasq => wait_dnsmasq(cx, name).await,
    }
}

/// matchbox's only health signal: `GET /` answers `matchbox`.
async fn wait_matchbox(cx: &Context<'_>, name: &str) -> Result<(), Error> {
    let url = format!("{}/", cx.s.http_base());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .map_err(|e| Error::Failed(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match client.get(&url).send().await {
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                if status.is_success() && body.trim() == "matchbox" {
                    return Ok(());
                }
                last = format!("HTTP {status}: {:?}", body.chars().take(80).collect::<String>());
            }
            Err(e) => last = e.to_string(),
        }
        if !cx.engine.container(name).await?.is_some_and(|c| c.running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(with_logs(cx, name, format!("matchbox did not answer GET {url} with `matchbox` ({last})")).await)
}

async fn wait_dnsmasq(cx: &Context<'_>, name: &str) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        let logs = cx.engine.logs(name, Some(200)).await?;
        if logs.contains(DNSMASQ_STARTED) {
            return Ok(());
        }
        if !cx.engine.container(name).await?.is_some_and(|c| c.running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(with_logs(cx, name, format!("dnsmasq did not log `{DNSMASQ_STARTED}`")).await)
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
            Err(Error::Failed(format!("the new {name} failed to start: {e}\n  {restored}")))
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
