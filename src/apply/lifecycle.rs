//! Starting, health-checking and replacing the two containers: new before old, old back
//! on failure.

use super::{spec_for, Context};
use crate::engine::spec::NetworkMode;
use crate::error::Error;
use crate::plan::Observed;
use crate::reach::{self, Vantage};
use crate::render::containers::Role;
use std::time::Duration;

const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const DNSMASQ_STARTED: &str = "started, version";
/// What matchbox logs once its HTTP listener is up.
const MATCHBOX_STARTED: &str = "Starting matchbox HTTP server";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a starting container is looked at.
const POLL: Duration = Duration::from_millis(100);
/// A process that answers once and then dies is still a crash: look again after this long.
const SETTLE: Duration = Duration::from_millis(300);

/// Starts the container and waits until it shows its health signal — matchbox answers
/// `GET /` with `matchbox`, dnsmasq logs its start line — and is still running a moment later.
/// A crash at any point fails at once, with the container's last log lines.
///
/// matchbox is asked from where its address can really be reached (see [`reach`]): from this
/// host, or from inside its own network namespace. When neither is possible its start-up log
/// line stands in, and the answer says that HTTP was not checked.
pub(super) async fn start_and_wait(cx: &Context<'_>, role: Role, name: &str) -> Result<Checked, Error> {
    cx.engine.start(name).await?;
    let vantage = match role {
        Role::Matchbox => Some(reach::vantage(cx.s, cx.engine, name).await?),
        Role::Dnsmasq => None,
    };
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut waiting_for;
    loop {
        still_running(cx, name).await?;
        waiting_for = match healthy(cx, name, vantage.as_ref()).await? {
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
    still_running(cx, name).await?;
    Ok(match vantage {
        Some(Vantage::InContainer { why, .. }) => Checked::FromInside(why),
        Some(Vantage::Nowhere { why, fix }) => Checked::NotOverHttp(format!(
            "{name} runs and logged `{MATCHBOX_STARTED}`, but its HTTP answer could not be checked from this host: {why}\n  fix: {fix}"
        )),
        _ => Checked::Here,
    })
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
async fn healthy(cx: &Context<'_>, name: &str, vantage: Option<&Vantage>) -> Result<Option<String>, Error> {
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
            match vantage.run(cx.engine, move || says_matchbox(asked)).await {
                Ok(answer) => answer.map(|why| format!("{why}{from}")),
                Err(e) => Some(format!("GET {url}{from}: {e}")),
            }
        }
    })
}

/// `None` when `GET url` answers `matchbox`, else what it did instead. Never sent to an
/// address reached through a gateway: a stranger's answer would be taken for matchbox's.
async fn says_matchbox(url: String) -> Option<String> {
    let parsed = match reqwest::Url::parse(&url) {
        Ok(u) => u,
        Err(e) => return Some(format!("{url} is not a URL: {e}")),
    };
    if let Err(refused) = reach::guard(&parsed) {
        return Some(refused);
    }
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).no_proxy().build() {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot make an HTTP client: {e}")),
    };
    match client.get(parsed).send().await {
        Ok(r) if r.status().is_success() => {
            let body = r.text().await.unwrap_or_default();
            (body.trim() != "matchbox").then(|| format!("GET {url} answered {body:?}, not `matchbox`"))
        }
        Ok(r) => Some(format!("GET {url} answered HTTP {}", r.status())),
        Err(e) => Some(format!("GET {url}: {e}")),
    }
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
/// Returns how the new container's health was checked.
pub(super) async fn replace(cx: &Context<'_>, role: Role, observed: &Observed) -> Result<Checked, Error> {
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
        Ok(checked) => {
            engine.remove(&old_name, true).await?;
            Ok(checked)
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
