//! `cozyboot smoke`: check the settings and the host, make the run's network, start its boot
//! site with `up`, boot the VM, and remove everything made — on success, on failure, on a
//! panic and on Ctrl-C or SIGTERM alike.

use super::{runtime, Output};
use crate::apply::progress::{Printer, ProgressMode};
use crate::cli::SmokeArgs;
use crate::engine::docker::Engine;
use crate::error::{ConfigError, Error, Result};
use crate::render::containers::LABEL_DATA_DIR;
use crate::settings::net::SystemNet;
use crate::settings::{self, Purpose, Resolved};
use crate::smoke::lab::{self, Lab, Names};
use crate::smoke::run::{self, Context};
use crate::smoke::vm::{self, Accel};
use crate::smoke::{prereq, DhcpMode, Machine, Request};
use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Removing the run's containers may not wait on a hung engine forever.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(args: &SmokeArgs, config: Option<PathBuf>, json: bool) -> Result<Output> {
    let t0 = Instant::now();
    if let Some(file) = config {
        return Err(Error::config(
            ConfigError::new(
                "config",
                "smoke reads no config file: a site's file describes its real network (iface, range, gateway), never the run's own",
                "give the image and kernel settings as flags (--variant, --tag, --registry, --kernel-args, ...)",
            )
            .value(file.display().to_string()),
        ));
    }
    let machine = Machine::new(args.arch, args.firmware)
        .map_err(|e| Error::config(ConfigError::new("firmware", e, "see `cozyboot smoke --help`")))?;
    let pid = std::process::id();
    let names = Names::for_pid(pid);
    let work = tempfile::Builder::new().prefix("cozyboot-smoke-").tempdir()?;
    // The dnsmasq container may drop to `nobody`: its TFTP root must be traversable.
    fs_err::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    let data_dir = work.path().join("data");
    let no_config = work.path().join("no-config.yaml");
    fs_err::write(&no_config, "")?;

    // Everything that can be known before anything is made is checked first: settings
    // (against a placeholder network), root, the programs and firmware, the engine.
    let placeholder: Ipv4Net = "10.247.0.0/24".parse().expect("a subnet");
    let site = SiteInput {
        args,
        veth: &names.veth,
        data_dir: &data_dir,
        no_config: &no_config,
        pid,
    };
    site.resolve(placeholder, 8080, Purpose::Render)?;
    if !prereq::is_root() {
        return Err(Error::config(ConfigError::new(
            "smoke",
            "smoke needs root: it creates a network namespace, a veth, a bridge and a tap, and runs QEMU on the tap",
            "run it with sudo (in GitHub Actions: `sudo cozyboot smoke ...`)",
        )));
    }
    let dhcp = args.dhcp;
    let tools = prereq::find(machine, dhcp, &|p: &Path| p.exists())
        .map_err(|m| Error::config(ConfigError::new("smoke", m.message(), m.fix())))?;
    let accel = match args.accel.as_str() {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        _ => Accel::detect(machine.arch),
    };
    let request = Request {
        machine,
        dhcp,
        until: args.until,
        timeout: args.timeout.map(Duration::from_secs),
        memory_mib: args.memory,
    };
    let keep = args
        .keep
        .as_ref()
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()));

    let rt = runtime()?;
    // Registered before anything is made, so that Ctrl-C from here on cleans up instead of
    // killing the process.
    let mut signals = rt.block_on(async { Signals::new() })?;
    let engine = rt.block_on(Engine::connect())?;
    let taken = Lab::host_networks(&tools.ip)?;
    let subnet = lab::pick_subnet(&taken, pid).ok_or_else(|| {
        Error::Failed(
            "no free /24 in 10.247.0.0/16, 172.30.0.0/16 or 192.168.0.0/16 clashes with none of this host's routes"
                .into(),
        )
    })?;

    // From here on, drop order is cleanup order: containers, then the network, then the
    // temporary dir (declared first, dropped last).
    let mut lab = Lab::create(&tools.ip, names.clone(), subnet, dhcp == DhcpMode::Proxy)?;
    let _containers = RunContainers {
        data_dir: data_dir.clone(),
    };
    let resolved = site.resolve(subnet, free_port()?, Purpose::Serve)?;
    // Progress goes to stderr also with --json: a CI log shows where a long run is.
    let printer = Printer::stderr(ProgressMode::detect(json, false));
    let cx = Context {
        engine: &engine,
        settings: &resolved.settings,
        lab: &mut lab,
        tools: &tools,
        request: &request,
        accel,
        accel_auto: args.accel == "auto",
        mac: vm::mac_for(pid),
        work: work.path(),
        keep: keep.as_deref(),
        printer,
        t0,
    };
    let outcome = rt.block_on(async {
        tokio::select! {
            r = run::boot(cx) => r,
            name = signals.recv() => Err(Error::Failed(format!(
                "interrupted by {name}: the VM, the site's containers and the network were removed"
            ))),
        }
    })?;
    let doc = outcome.to_json();
    if let Some(dir) = &keep {
        let text = serde_json::to_string_pretty(&doc).expect("the report serializes");
        fs_err::write(dir.join("smoke.json"), text)?;
    }
    let output = Output::new(outcome.to_human(), doc);
    // A failed boot's report (journey, diagnosis, console tail) is the answer: printed, exit 1.
    Ok(if outcome.ok() {
        output
    } else {
        output.failing("the machine did not reach the stage")
    })
}

/// The flags that make the site's settings, and the settings that belong to the run.
struct SiteInput<'a> {
    args: &'a SmokeArgs,
    veth: &'a str,
    data_dir: &'a Path,
    no_config: &'a Path,
    pid: u32,
}

impl SiteInput<'_> {
    fn resolve(&self, subnet: Ipv4Net, port: u16, purpose: Purpose) -> Result<Resolved> {
        let a = &self.args.site;
        let host = |n: u8| {
            let [p, q, r, _] = subnet.network().octets();
            Ipv4Addr::new(p, q, r, n)
        };
        let range = (self.args.dhcp == DhcpMode::Full).then(|| format!("{},{}", host(100), host(150)));
        let serve = if a.serve_arch.is_empty() {
            vec![self.args.arch.name().to_string()]
        } else {
            a.serve_arch.clone()
        };
        // The run boots QEMU, not a Raspberry Pi: the Pi firmware is not fetched unless asked.
        let mut boot = a.boot.clone();
        boot.rpi_netboot.get_or_insert_with(|| "off".into());
        let flags = crate::cli::SettingsArgs {
            images: a.images.clone(),
            boot,
            arch: serve,
            iface: Some(self.veth.to_string()),
            server_ip: Some(host(1).to_string()),
            subnet: Some(subnet.to_string()),
            dhcp_range: range,
            http_port: Some(port.to_string()),
            data_dir: Some(self.data_dir.to_path_buf()),
            network: Some("host".into()),
            matchbox_name: Some(format!("cozyboot-smoke-{}-matchbox", self.pid)),
            dnsmasq_name: Some(format!("cozyboot-smoke-{}-dnsmasq", self.pid)),
            ..Default::default()
        };
        // An empty config file and no environment: a user's cozyboot.yaml or COZYBOOT_*
        // variables describe their real site (its iface, range, gateway), never this one.
        settings::resolve(settings::Inputs {
            config_file: Some(self.no_config.to_path_buf()),
            env: &|_| None,
            flags: flags.to_raw(),
            host: &SystemNet,
            purpose,
            site: &settings::no_site,
        })
    }
}

/// A port for matchbox that nothing on the host listens on now.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("0.0.0.0", 0))?;
    Ok(l.local_addr()?.port())
}

/// The run's containers (the site's two, and `up`'s temporary extraction containers),
/// found by the data dir label `up` puts on all of them, removed on drop.
struct RunContainers {
    data_dir: PathBuf,
}

impl Drop for RunContainers {
    fn drop(&mut self) {
        let label = format!("{LABEL_DATA_DIR}={}", self.data_dir.display());
        // Its own thread and runtime: drop may run inside or outside the command's runtime,
        // or while a panic unwinds.
        let work = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                let remove = async {
                    let engine = Engine::connect().await.ok()?;
                    for c in engine.list_labelled(&label).await.ok()? {
                        if let Err(e) = engine.remove(&c.name, true).await {
                            eprintln!("warning: could not remove the container {}: {e}", c.name);
                        }
                    }
                    Some(())
                };
                let _ = tokio::time::timeout(REMOVE_TIMEOUT, remove).await;
            });
        });
        let _ = work.join();
    }
}

/// Ctrl-C, SIGTERM (a CI job cancelled) and SIGHUP (the terminal gone) all end the run.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        let on = |k: SignalKind| signal(k).map_err(|e| Error::Failed(format!("installing a signal handler: {e}")));
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
