//! One smoke boot: check that the site can only answer on the run's own veth, start it with
//! `apply::up`, start proxy mode's router, boot the VM and follow it until it reaches the
//! goal, can get no further, or the time is up.

use super::follow::{self, Evidence, Progress};
use super::lab::Lab;
use super::prereq::Tools;
use super::report::{NetworkFacts, Outcome};
use super::vm::{self, Accel, VmSpec};
use super::{DhcpMode, Request, Until};
use crate::apply::progress::Printer;
use crate::apply::{self, UpOptions};
use crate::engine::docker::Engine;
use crate::error::Error;
use crate::host::reach::route;
use crate::journey::diagnosis::Site;
use crate::journey::model::Journey;
use crate::render;
use crate::settings::{Network, Settings};
use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Talos's API (apid) in maintenance mode.
pub const TALOS_PORT: u16 = 50000;
const POLL: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pulling and extracting the variant's images may take a while on a slow link, not forever.
const SETUP_TIMEOUT: Duration = Duration::from_secs(900);

/// Refuses a site whose dnsmasq could answer anywhere but on `veth`: exactly one
/// `--interface=<veth>`, `--bind-interfaces`, no `--except-interface`, on the host network.
pub fn check_binding(s: &Settings, veth: &str) -> Result<(), Error> {
    let argv = render::dnsmasq::args(s);
    let interfaces: Vec<&String> = argv.iter().filter(|a| a.starts_with("--interface")).collect();
    let ok = s.network == Network::Host
        && interfaces == [&format!("--interface={veth}")]
        && argv.iter().any(|a| a == "--bind-interfaces")
        && !argv.iter().any(|a| a.starts_with("--except-interface"));
    if ok {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "refusing to start: the rendered dnsmasq would not be bound to {veth} alone: {}",
            argv.join(" ")
        )))
    }
}

/// What a run works with, made by the caller (who also removes it all).
pub struct Context<'a> {
    pub engine: &'a Engine,
    pub settings: &'a Settings,
    pub lab: &'a mut Lab,
    pub tools: &'a Tools,
    pub request: &'a Request,
    pub accel: Accel,
    /// The accelerator was chosen, not asked for: a KVM that cannot run the VM falls back to TCG.
    pub accel_auto: bool,
    pub mac: String,
    /// Scratch files: serial console, router and QEMU logs.
    pub work: &'a Path,
    pub keep: Option<&'a Path>,
    pub printer: Printer,
    /// When the run began (for the setup time).
    pub t0: Instant,
}

pub async fn boot(cx: Context<'_>) -> Result<Outcome, Error> {
    let s = cx.settings;
    check_binding(s, &cx.lab.names.veth)?;
    let options = UpOptions {
        dry_run: false,
        move_foreign: false,
        printer: cx.printer.clone(),
    };
    let report = tokio::time::timeout(SETUP_TIMEOUT, apply::up(s, cx.engine, options))
        .await
        .map_err(|_| {
            Error::Failed(format!(
                "starting the boot site took longer than {SETUP_TIMEOUT:?}\n  fix: check that the registry answers (`docker pull` the talos image by hand) and that the Docker Engine is not stuck; the run's containers were removed"
            ))
        })??;
    for w in &report.warnings {
        cx.printer.line(&format!("warning: {w}"));
    }
    let router_log = cx.work.join("router-dnsmasq.log");
    if let Some(dnsmasq) = &cx.tools.dnsmasq {
        cx.lab.start_router(dnsmasq, &router_log)?;
    }
    let setup = cx.t0.elapsed();

    let serial = cx.work.join("serial.log");
    let qemu_log = cx.work.join("qemu.log");
    let (dnsmasq_name, matchbox_name) = (s.names.dnsmasq.clone(), s.names.matchbox.clone());
    let mut accel = cx.accel;
    let (mut progress, mut stopped, boot, timeout) = loop {
        let timeout = timeout_for(cx.request.timeout, cx.request.machine, accel);
        let spec = VmSpec {
            machine: cx.request.machine,
            accel,
            qemu: cx.tools.qemu.clone(),
            firmware: cx.tools.firmware.clone(),
            tap: super::lab::TAP.to_string(),
            mac: cx.mac.clone(),
            serial: serial.clone(),
            memory_mib: cx.request.memory_mib,
        };
        let log = File::create(&qemu_log)?;
        let mut command = tokio::process::Command::from(spec.command(&cx.tools.ip, &cx.lab.names.netns));
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        cx.printer.line(&format!(
            "booting {} ({}) on {} ({}), until `{}`, at most {} s",
            cx.request.machine.label(),
            accel.name(),
            cx.lab.names.veth,
            cx.lab.subnet,
            cx.request.until,
            timeout.as_secs()
        ));
        let mut qemu = command
            .spawn()
            .map_err(|e| {
                Error::Failed(format!(
                    "starting QEMU ({}): {e}\n  fix: run `{} --version` to see whether it works here; reinstall the package that ships it",
                    cx.tools.qemu.display(),
                    cx.tools.qemu.display()
                ))
            })?;
        let started = Instant::now();
        let mut progress = Progress::new(&cx.mac, cx.request.machine.firmware, cx.request.until);
        let mut stopped = None;
        let mut kvm_broken = false;
        loop {
            let ev = evidence(cx.engine, &dnsmasq_name, &matchbox_name, &router_log, &serial).await;
            let journey = progress.journey(&ev);
            let now = started.elapsed();
            let open = cx.request.until == Until::Talos
                && progress.may_answer()
                && talos_answers(candidates(&cx.mac, &ev, journey.as_ref(), cx.lab)).await;
            progress.observe(journey.as_ref(), &ev, open, now);
            if progress.done() {
                break;
            }
            let exited = qemu.try_wait().ok().flatten();
            // /dev/kvm can open and still not run a guest (nested virtualisation without the
            // CPU features QEMU sets): QEMU aborts or reports an internal error at once.
            if accel == Accel::Kvm && progress.reached.is_empty() {
                let words = read_lossy(&qemu_log);
                if exited.is_some() || words.contains("KVM internal error") {
                    kvm_broken = true;
                    stopped = Some(format!("KVM could not run the VM{}", last_words(&words)));
                    break;
                }
            }
            if let Some(why) = progress.hopeless(&ev, now) {
                stopped = Some(why);
                break;
            }
            if let Some(status) = exited {
                stopped = Some(format!(
                    "the VM powered off or rebooted (QEMU exited: {status}){}",
                    last_words(&read_lossy(&qemu_log))
                ));
                break;
            }
            if now >= timeout {
                stopped = Some(format!("timed out after {} s", timeout.as_secs()));
                break;
            }
            tokio::time::sleep(POLL.min(timeout - now)).await;
        }
        let boot = started.elapsed();
        let _ = qemu.kill().await;
        if kvm_broken && cx.accel_auto {
            cx.printer.line(&format!(
                "{}; booting again under TCG (software emulation)",
                stopped.as_deref().unwrap_or_default()
            ));
            accel = Accel::Tcg;
            let _ = std::fs::remove_file(&serial);
            continue;
        }
        break (progress, stopped, boot, timeout);
    };

    // The last lines written before QEMU stopped may have shown more.
    let ev = evidence(cx.engine, &dnsmasq_name, &matchbox_name, &router_log, &serial).await;
    let journey = progress.journey(&ev);
    progress.observe(journey.as_ref(), &ev, false, boot);
    if progress.done() {
        stopped = None;
    }
    let kept = match cx.keep {
        Some(dir) => keep(dir, &ev, cx.request.dhcp, cx.work)?,
        None => BTreeMap::new(),
    };
    Ok(Outcome {
        machine: cx.request.machine,
        dhcp: cx.request.dhcp,
        accel,
        until: cx.request.until,
        timeout,
        images: vec![s.talos_image(), s.matchbox_image()],
        network: NetworkFacts {
            netns: cx.lab.names.netns.clone(),
            veth: cx.lab.names.veth.clone(),
            subnet: cx.lab.subnet.to_string(),
            server_ip: cx.lab.server_ip(),
        },
        progress,
        journey,
        site: Site::of(s),
        stopped,
        setup,
        boot,
        serial: ev.serial,
        kept,
    })
}

async fn evidence(engine: &Engine, dnsmasq: &str, matchbox: &str, router: &Path, serial: &Path) -> Evidence {
    Evidence {
        dnsmasq: engine.logs_with_times(dnsmasq, None).await.unwrap_or_default(),
        matchbox: engine.logs_with_times(matchbox, None).await.unwrap_or_default(),
        router: read_lossy(router),
        serial: read_lossy(serial),
    }
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Where Talos may answer: every address leased to the VM (the booted system asks for its
/// own), only on the run's own subnet and directly connected through its veth, never the
/// server's own address and never anything behind a gateway.
fn candidates(mac: &str, ev: &Evidence, journey: Option<&Journey>, lab: &Lab) -> Vec<Ipv4Addr> {
    let mut ips = follow::leased(mac, &ev.dnsmasq);
    ips.extend(follow::leased(mac, &ev.router));
    ips.extend(journey.and_then(|j| j.ip));
    ips.sort();
    ips.dedup();
    ips.retain(|ip| {
        lab.subnet.contains(ip)
            && *ip != lab.server_ip()
            && matches!(route::route_to(*ip), route::Route::OnLink { ref iface } if *iface == lab.names.veth)
    });
    ips
}

async fn talos_answers(ips: Vec<Ipv4Addr>) -> bool {
    let probes = ips.into_iter().map(|ip| async move {
        let addr = SocketAddr::from((ip, TALOS_PORT));
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        )
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .any(|open| open)
}

/// Saves the logs for a CI artifact: the serial console, both containers' logs (with
/// docker's times), QEMU's own output and, in proxy mode, the router's.
fn keep(dir: &Path, ev: &Evidence, dhcp: DhcpMode, work: &Path) -> Result<BTreeMap<String, PathBuf>, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Failed(format!("creating the --keep dir {}: {e}", dir.display())))?;
    let mut files = vec![
        ("serial", "serial.log", ev.serial.clone()),
        ("dnsmasq", "dnsmasq.log", ev.dnsmasq.clone()),
        ("matchbox", "matchbox.log", ev.matchbox.clone()),
        ("qemu", "qemu.log", read_lossy(&work.join("qemu.log"))),
    ];
    if dhcp == DhcpMode::Proxy {
        files.push(("router", "router-dnsmasq.log", ev.router.clone()));
    }
    let mut kept = BTreeMap::new();
    for (name, file, text) in files {
        let path = std::path::absolute(dir.join(file)).unwrap_or_else(|_| dir.join(file));
        std::fs::write(&path, text).map_err(|e| Error::Failed(format!("writing {}: {e}", path.display())))?;
        kept.insert(name.to_string(), path);
    }
    Ok(kept)
}

/// The time the VM gets: the user's, else what fits the accelerator.
pub fn timeout_for(given: Option<Duration>, machine: super::Machine, accel: Accel) -> Duration {
    given.unwrap_or_else(|| vm::default_timeout(machine, accel))
}

/// QEMU's last line on its own stderr, for a report: `; QEMU said: ...`.
fn last_words(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!("; QEMU said: {}", l.trim()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{self, net::FixedNet, Inputs, Purpose, Raw};

    fn settings(iface: &str) -> Settings {
        let flags: Raw = serde_json::from_value(serde_json::json!({ "iface": iface })).unwrap();
        settings::resolve(Inputs {
            config_file: None,
            env: &|_| None,
            flags,
            host: &FixedNet(vec![(iface.into(), vec!["10.247.3.1/24".parse().unwrap()])]),
            purpose: Purpose::Serve,
            site: &settings::no_site,
        })
        .unwrap()
        .settings
    }

    #[test]
    fn the_site_starts_only_when_dnsmasq_binds_the_runs_veth_alone() {
        assert!(check_binding(&settings("csm42"), "csm42").is_ok());
        let other = check_binding(&settings("eth0"), "csm42").unwrap_err().to_string();
        assert!(
            other.contains("refusing to start") && other.contains("--interface=eth0"),
            "{other}"
        );
        let mut named = settings("csm42");
        named.network = Network::Named("macvlan0".into());
        assert!(check_binding(&named, "csm42").is_err());
    }
}
