//! Where matchbox can be asked from, so that what answers is matchbox.
//!
//! On a macvlan or ipvlan network the host cannot reach its own containers: a GET to their
//! address leaves by the default route and whatever server owns that address elsewhere
//! answers (measured: `up` waited 20 s for "HTTP 404" from a stranger). So cozyboot never
//! sends a probe to an address that is neither local nor directly connected ([`route`]), and
//! not over a macvlan/ipvlan parent to its own children. Such an address is checked from
//! inside the container's network namespace instead ([`netns`]), which needs root; without
//! it cozyboot says that it could not check, and how to.

pub mod netns;
pub mod route;

use crate::engine::docker::{EngineError, NetworkInfo};
use crate::engine::{ContainerEngine, Engine};
use crate::settings::{Network, Settings};
use route::Route;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

/// Where a probe of matchbox is sent from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vantage {
    /// From this host's (this process's) network namespace.
    Here,
    /// From inside the network namespace of container `name`, whose first process is `pid`;
    /// `why` says why not from here.
    InContainer { name: String, pid: u32, why: String },
    /// Not at all: `why` says why, `fix` how to check anyway.
    Nowhere { why: String, fix: String },
    /// Only from inside the container, which is not running.
    Stopped { why: String },
}

impl Vantage {
    /// One line of evidence saying where checks were made from, when not simply from here.
    pub fn evidence(&self) -> Option<String> {
        match self {
            Vantage::Here => None,
            Vantage::InContainer { name, pid, why } => Some(format!(
                "checked from inside the network namespace of container {name} (pid {pid}): {why}"
            )),
            Vantage::Nowhere { why, .. } | Vantage::Stopped { why } => Some(format!("not checked over HTTP: {why}")),
        }
    }

    /// Runs `work` from this vantage point. In a container's namespace it runs on a thread of
    /// its own; the container is looked at again after its namespace is opened, so a pid
    /// reused by another process is never entered.
    pub async fn run<E, T, F, Fut>(&self, engine: &E, work: F) -> Result<T, String>
    where
        E: ContainerEngine,
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        match self {
            Vantage::Here => Ok(work().await),
            Vantage::InContainer { name, pid, .. } => {
                let ns = netns::open(*pid)?;
                match engine.container(name).await {
                    Ok(Some(c)) if c.running && c.pid == Some(*pid) => {}
                    Ok(_) => return Err(format!("{name} stopped or restarted (its pid is no longer {pid})")),
                    Err(e) => return Err(e.to_string()),
                }
                netns::run_in(ns, work).await
            }
            Vantage::Nowhere { why, .. } | Vantage::Stopped { why } => Err(why.clone()),
        }
    }
}

/// How `apply` asks a started matchbox whether it answers. Kept off [`ContainerEngine`], so
/// the engine stays about containers: a real engine is asked through over the network, from
/// where matchbox's address can really be reached; the unit tests' fake answers from the
/// containers it holds.
#[allow(async_fn_in_trait)]
pub trait AskMatchbox: ContainerEngine {
    /// Where the running matchbox `name` can be asked over HTTP from.
    async fn matchbox_vantage(&self, s: &Settings, name: &str) -> Result<Vantage, EngineError> {
        vantage(s, self, name).await
    }

    /// `Ok(None)` when `GET url`, asked from `vantage`, answers `matchbox`; `Ok(Some(why))`
    /// when it answered something else; `Err` when it could not be asked from there.
    async fn ask_matchbox(&self, vantage: &Vantage, url: String) -> Result<Option<String>, String> {
        vantage.run(self, move || says_matchbox(url)).await
    }
}

impl AskMatchbox for Engine {}

#[cfg(test)]
impl AskMatchbox for crate::engine::fake::FakeEngine {
    async fn matchbox_vantage(&self, _s: &Settings, _name: &str) -> Result<Vantage, EngineError> {
        Ok(Vantage::Here)
    }

    /// matchbox answers when a container of that role runs and no health fault hit it.
    async fn ask_matchbox(&self, _vantage: &Vantage, url: String) -> Result<Option<String>, String> {
        match self.running_healthy(crate::render::containers::LABEL_ROLE, "matchbox") {
            None => Err(format!("GET {url}: connection refused")),
            Some(false) => Ok(Some(format!("GET {url} answered HTTP 503"))),
            Some(true) => Ok(None),
        }
    }
}

/// How long one health request to matchbox may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `None` when `GET url` answers `matchbox`, else what it did instead. Never sent to an
/// address reached through a gateway: a stranger's answer would be taken for matchbox's.
pub async fn says_matchbox(url: String) -> Option<String> {
    let parsed = match reqwest::Url::parse(&url) {
        Ok(u) => u,
        Err(e) => return Some(format!("{url} is not a URL: {e}")),
    };
    if let Err(refused) = guard(&parsed) {
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

/// The fix when matchbox cannot be checked from where cozyboot runs.
pub const NOWHERE_FIX: &str = "run cozyboot as root on the Docker host (it then checks from inside the container's network namespace), or run `cozyboot validate` from a machine on that network";

/// Where to ask matchbox (container `container`) at `server-ip` from.
pub async fn vantage<E: ContainerEngine>(s: &Settings, engine: &E, container: &str) -> Result<Vantage, EngineError> {
    let network = match &s.network {
        Network::Host => None,
        Network::Named(name) => engine.network(name).await?,
    };
    let why = match from_here(s.server_ip, &route::route_to(s.server_ip), network.as_ref()) {
        Ok(()) => return Ok(Vantage::Here),
        Err(why) => why,
    };
    if s.network == Network::Host {
        return Ok(Vantage::Nowhere {
            why,
            fix: "set --server-ip to an address of --iface".into(),
        });
    }
    if !engine.is_local() {
        return Ok(Vantage::Nowhere {
            why: format!(
                "{why}, and the engine at {} runs on another machine, so its containers' namespaces are not here",
                engine.host()
            ),
            fix: "run `cozyboot validate` from a machine on that network".into(),
        });
    }
    Ok(match engine.container(container).await?.and_then(|c| c.pid) {
        // Entering another network namespace takes CAP_SYS_ADMIN; say so now rather than
        // fail the checks later.
        Some(_) if !is_root() => Vantage::Nowhere {
            why: format!("{why}, and only root can check from inside {container}'s network namespace"),
            fix: NOWHERE_FIX.into(),
        },
        Some(pid) => match netns::open(pid) {
            Ok(_) => Vantage::InContainer {
                name: container.to_string(),
                pid,
                why,
            },
            Err(e) => Vantage::Nowhere {
                why: format!("{why}, and {container}'s network namespace cannot be entered: {e}"),
                fix: NOWHERE_FIX.into(),
            },
        },
        None => Vantage::Stopped {
            why: format!("{why}, and {container}, from inside which it could be asked, is not running"),
        },
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `Ok` when `dest` can be asked from here: a local address, or a directly connected one
/// that is not a macvlan/ipvlan child of the very interface the packet would leave by.
pub fn from_here(dest: Ipv4Addr, route: &Route, network: Option<&NetworkInfo>) -> Result<(), String> {
    match route {
        Route::Local => Ok(()),
        Route::OnLink { iface } => match network.filter(|n| n.hides_children_from_parent()) {
            Some(n) if n.parent.as_deref() == Some(iface.as_str()) => Err(format!(
                "this host cannot reach {dest}: it is a {} child of {iface}, and the kernel keeps a {} parent and its children apart",
                n.driver, n.driver
            )),
            _ => Ok(()),
        },
        other => Err(format!("from this host, {dest} is {other}")),
    }
}

/// Refuses, before anything is sent, a URL whose host the calling thread's namespace would
/// reach only through a gateway or not at all: whatever answered there would not be ours.
pub fn guard(url: &reqwest::Url) -> Result<(), String> {
    let Some(host) = url.host_str() else {
        return Err(format!("not sent: {url} has no host"));
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("not sent: {host} does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    for addr in addrs {
        let route = match addr {
            IpAddr::V4(ip) => route::route_to(ip),
            IpAddr::V6(ip) if ip.is_loopback() => Route::Local,
            IpAddr::V6(ip) => Route::NoRoute(format!("{ip} is IPv6, which cozyboot does not probe")),
        };
        if !route.is_direct() {
            return Err(format!(
                "not sent: {host} ({addr}) is {route}; cozyboot sends probes only to local and directly connected addresses, so that no other server can answer in matchbox's place"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macvlan(parent: &str) -> NetworkInfo {
        NetworkInfo {
            name: "lan".into(),
            driver: "macvlan".into(),
            parent: Some(parent.into()),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn local_and_directly_connected_addresses_are_asked_from_here() {
        assert_eq!(from_here(ip("10.0.0.1"), &Route::Local, None), Ok(()));
        let on_br = Route::OnLink { iface: "br-1".into() };
        assert_eq!(from_here(ip("10.215.3.10"), &on_br, None), Ok(()));
        // A macvlan shim interface on the host does reach the children.
        let on_shim = Route::OnLink {
            iface: "mv-shim".into(),
        };
        assert_eq!(from_here(ip("10.217.0.10"), &on_shim, Some(&macvlan("eth0"))), Ok(()));
    }

    #[test]
    fn a_macvlan_child_is_not_asked_over_its_parent() {
        let on_eth0 = Route::OnLink { iface: "eth0".into() };
        let why = from_here(ip("192.168.1.10"), &on_eth0, Some(&macvlan("eth0"))).unwrap_err();
        assert!(why.contains("macvlan child of eth0"), "{why}");
    }

    #[test]
    fn nothing_is_asked_through_a_gateway_or_without_a_route() {
        let gw = Route::ViaGateway {
            source: ip("192.168.1.5"),
        };
        let why = from_here(ip("10.217.0.10"), &gw, Some(&macvlan("cbmv-p"))).unwrap_err();
        assert!(why.contains("through a gateway"), "{why}");
        let none = Route::NoRoute("Network is unreachable".into());
        assert!(from_here(ip("10.217.0.10"), &none, None).is_err());
    }

    #[test]
    fn guard_lets_loopback_through() {
        assert_eq!(guard(&"http://127.0.0.1:8080/".parse().unwrap()), Ok(()));
        assert_eq!(guard(&"http://[::1]:8080/".parse().unwrap()), Ok(()));
    }
}
