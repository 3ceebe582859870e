//! The second phase of `up`: what must hold before anything is changed. A binary to download
//! is fetched and checked, the data dir locked, a killed run's leftovers removed, a rollback
//! that could not finish completed, and the ports the new containers need found free.

use super::observe::Seen;
use super::{bootloaders, lifecycle, Context, Run};
use crate::artifacts::matchbox_version::{self, Verdict};
use crate::engine::docker::TEMPORARY_LABEL;
use crate::engine::ContainerEngine;
use crate::error::Error;
use crate::host::ports::{self, Proto};
use crate::host::reach::AskMatchbox;
use crate::plan::{self, Action, Observed};
use crate::render::container_spec::ContainerSpec;
use crate::render::containers::{self, Role};
use crate::settings::{DhcpMode, Network, Settings};
use crate::store::state::{self, State};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// What [`Run::preflight`] settled.
pub(super) struct Ready {
    /// The arm64 iPXE binary, downloaded and checked, when one is installed from a URL.
    pub fetched: Option<Vec<u8>>,
    /// One `up` at a time per data dir: held until the run ends.
    pub lock: fs::File,
    /// `recover` put a container back under its name (a rollback that could not finish).
    pub recovered: bool,
    /// A site without containers: they start as soon as their (small) images are pulled,
    /// while the Talos image is still pulled and extracted.
    pub fresh: bool,
    /// The containers a fresh site starts that way.
    pub early: Vec<Action>,
}

impl<E: AskMatchbox> Run<'_, E> {
    pub(super) async fn preflight(&mut self, seen: &Seen) -> Result<Ready, Error> {
        let cx = &self.cx;
        let s = cx.s;
        // A binary to download is fetched and checked before anything is changed: offline, a
        // bad mirror or an x86 build at the URL leaves the site exactly as it was.
        let fetched = match (
            &cx.arm64,
            plan::plan(&seen.desired, &seen.observed).iter().any(is_arm64_install),
        ) {
            (Some(source), true) if source.cached.is_none() && bootloaders::is_url(&source.source) => {
                Some(bootloaders::prefetch(s, source, &cx.printer).await?)
            }
            _ => None,
        };
        // Likewise the Pi UEFI firmware: downloaded, checked and cached before anything changes.
        if let (Some(source), true) = (
            &cx.rpi,
            plan::plan(&seen.desired, &seen.observed)
                .iter()
                .any(|a| matches!(a, Action::InstallRpiFirmware { .. })),
        ) {
            if source.cached.is_none() && bootloaders::is_url(&source.source) {
                super::rpi_firmware::prefetch(s, source, &cx.printer).await?;
            }
        }

        fs::create_dir_all(state::dir(&s.data_dir)).map_err(|e| {
            Error::Failed(format!(
                "cannot create the data dir {}: {e}\n  fix: run as root or choose a writable --data-dir",
                s.data_dir.display()
            ))
        })?;
        let lock = lock(&s.data_dir)?;
        remove_leftovers(cx.engine, s).await?;
        let recovered = lifecycle::recover(cx).await?;

        // On a site without containers, the containers start as soon as their (small) images
        // are pulled, while the Talos image is still being pulled and then extracted: no
        // previous container is waiting for these files, so the swap rule does not order them.
        let fresh = !recovered
            && cx
                .specs
                .iter()
                .all(|spec| !seen.observed.containers.contains_key(&spec.name));
        let early: Vec<Action> = if fresh {
            cx.specs
                .iter()
                .zip([Role::Matchbox, Role::Dnsmasq])
                .map(|(spec, role)| Action::CreateContainer {
                    role,
                    name: spec.name.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        self.report.warnings.extend(preflight_ports(cx, &early)?);
        if fresh {
            // Mount sources must exist before a container is created.
            let tls = s.rpc_port.map(|_| containers::tls_dir(s));
            for dir in std::iter::once(s.assets_dir()).chain(tls) {
                fs::create_dir_all(&dir).map_err(|e| Error::Failed(format!("creating {}: {e}", dir.display())))?;
            }
        }
        Ok(Ready {
            fetched,
            lock,
            recovered,
            fresh,
            early,
        })
    }
}

/// One `up` at a time per data dir.
fn lock(data_dir: &Path) -> Result<fs::File, Error> {
    let path = state::dir(data_dir).join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Failed(format!("cannot open the lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Failed(format!(
            "another `cozyboot up` is working on {} (lock {} is held)\n  fix: wait for it to finish, then run again",
            data_dir.display(),
            path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(Error::Failed(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// A run killed while extracting leaves its temporary container; holding the lock, every
/// temporary container of this data dir is such a leftover.
async fn remove_leftovers<E: ContainerEngine>(engine: &E, s: &Settings) -> Result<(), Error> {
    let label = format!("{}={}", containers::LABEL_DATA_DIR, s.data_dir.display());
    for c in engine.list_labelled(&label).await? {
        if c.labels.contains_key(TEMPORARY_LABEL) {
            engine.remove(&c.id, true).await?;
        }
    }
    Ok(())
}

/// On the host network, a port held by something else makes the new container crash-loop,
/// and a second DHCP server on the same interface answers the same machines: say who holds
/// what, with the fix that fits the port, before touching anything. Ports held by the
/// container being replaced are fine: it is stopped first. A port shared the way two dnsmasq
/// on two interfaces share 67/69 is reported, not refused: that is several sites per host.
pub(super) fn preflight_ports<E>(cx: &Context<'_, E>, actions: &[Action]) -> Result<Vec<String>, Error> {
    if cx.s.network != Network::Host {
        return Ok(Vec::new());
    }
    let s = cx.s;
    let (mut clashes, mut notes) = (Vec::new(), Vec::new());
    for action in actions {
        let Action::CreateContainer { role, .. } = action else {
            continue;
        };
        // (proto, port, how the server binds it, the fix when it cannot)
        let tcp_fix = |flag: &str| format!("stop what holds it, or give this site another {flag}");
        let dhcp_fix = format!(
            "stop the other DHCP server, or bind it to its own interface (dnsmasq: --interface=<its interface> --bind-interfaces), so that only this site answers on {}",
            s.iface
        );
        let listen = |flag: &str| ports::Binding::TcpListen(listen_address(&cx.specs[0], flag));
        let wanted: Vec<(Proto, u16, ports::Binding<'_>, String)> = match role {
            Role::Matchbox => std::iter::once((Proto::Tcp, s.http_port, listen("-address"), tcp_fix("--http-port")))
                .chain(
                    s.rpc_port
                        .map(|p| (Proto::Tcp, p, listen("-rpc-address"), tcp_fix("--rpc-port"))),
                )
                .collect(),
            Role::Dnsmasq => {
                let shared = ports::Binding::UdpShared { iface: &s.iface };
                let mut p = vec![
                    (Proto::Udp, 67, shared, dhcp_fix.clone()),
                    (
                        Proto::Udp,
                        69,
                        ports::Binding::UdpOn(s.server_ip),
                        format!("stop the TFTP server that holds {}:69 (or all addresses)", s.server_ip),
                    ),
                ];
                if s.dhcp == DhcpMode::Proxy {
                    p.push((Proto::Udp, 4011, shared, dhcp_fix.clone()));
                }
                p
            }
        };
        for (proto, port, binding, fix) in wanted {
            match ports::check(proto, port, binding) {
                ports::Verdict::Free => {}
                ports::Verdict::Shared(m) | ports::Verdict::Unchecked(m) => notes.push(format!("{}: {m}", role.name())),
                ports::Verdict::Clash(m) => clashes.push(format!("{} needs {m}\n  fix: {fix}", role.name())),
            }
        }
    }
    if clashes.is_empty() {
        return Ok(notes);
    }
    Err(Error::Failed(format!("{}\n  nothing was started", clashes.join("\n"))))
}

/// Refuses a matchbox image older than v0.11.0 before anything is replaced (its groups
/// could never match); asked once per image id, and only when matchbox is (re)created.
pub(super) async fn check_matchbox_version<E: ContainerEngine>(
    cx: &Context<'_, E>,
    starts_matchbox: bool,
    observed: &Observed,
    st: &mut State,
) -> Result<Option<String>, Error> {
    let image = cx.s.matchbox_image();
    let Some(image_id) = observed.images.get(&image).cloned().flatten() else {
        return Ok(None);
    };
    if !starts_matchbox || st.matchbox_version.as_ref().is_some_and(|v| v.image_id == image_id) {
        return Ok(None);
    }
    let (code, output) = cx
        .engine
        .run_once(&image, matchbox_version::VERSION_ARGS, Duration::from_secs(30))
        .await?;
    match matchbox_version::judge(code, &output) {
        Verdict::Supported(v) => {
            // Saved by the caller, with the rest of the state.
            st.matchbox_version = Some(state::ImageVersion {
                image,
                image_id,
                version: v.to_string(),
            });
            Ok(None)
        }
        Verdict::TooOld(v) => Err(Error::Failed(format!(
            "{}\n  nothing was changed: running containers and assets are as they were",
            matchbox_version::too_old(&image, v)
        ))),
        Verdict::Unknown(why) => Ok(Some(format!(
            "could not tell which matchbox {image} is ({why}); cozyboot needs {} or newer",
            matchbox_version::MINIMUM
        ))),
    }
}

pub(super) fn is_arm64_install(action: &Action) -> bool {
    matches!(action, Action::InstallArm64Bootloader { .. })
}

/// The address matchbox's `flag` (`-address`, `-rpc-address`) makes it listen on, read from
/// the argv it will run with, so the probe binds what matchbox will bind; the wildcard when the
/// flag is absent or not an IPv4 address.
fn listen_address(matchbox: &ContainerSpec, flag: &str) -> std::net::Ipv4Addr {
    matchbox
        .cmd
        .iter()
        .find_map(|a| {
            a.strip_prefix(flag)?
                .strip_prefix('=')?
                .parse::<std::net::SocketAddrV4>()
                .ok()
        })
        .map_or(std::net::Ipv4Addr::UNSPECIFIED, |a| *a.ip())
}
