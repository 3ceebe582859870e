//! The lab: the namespaces, links and servers of one boot, deleted on drop.

use super::*;

pub(super) fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace of our own, deleted (with everything running in it) on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

pub const BRIDGE: &str = "cb-br";
pub const TAP: &str = "cb-tap";
const ROUTER_IF: &str = "cb-rtr";
const ROUTER_PEER: &str = "cb-rtrp";

/// The network of one boot: [`TestNet`] plus, in its client namespace, a bridge joining the
/// veth to a tap for QEMU, and in proxy mode a third namespace for the router.
pub struct Lab {
    pub mode: Mode,
    /// The SMBIOS facts the VM is given; `None`: QEMU's defaults.
    pub smbios: Option<Smbios>,
    // Field order is drop order: the host's veth and the router namespace go first, then
    // the TestNet.
    host: Option<HostVeth>,
    router: Option<Netns>,
    pub net: TestNet,
}

/// A veth end in the HOST namespace that this lab created, its peer a port of the client
/// namespace's bridge: the interface `cozyboot up` on the host network binds dnsmasq to.
struct HostVeth(String);

impl Drop for HostVeth {
    fn drop(&mut self) {
        // Deleting one end deletes the pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

impl Lab {
    /// Returns `None` (after printing why) where namespaces cannot be made.
    pub fn new(mode: Mode) -> Option<Lab> {
        let net = TestNet::new()?;
        let cli = net.client_ns.clone();
        // The client end loses its address and becomes a bridge port; the tap joins it.
        ip(&["-n", &cli, "addr", "flush", "dev", &net.client_if]);
        ip(&[&["-n", cli.as_str()][..], &cozyboot::smoke::lab::bridge_args(BRIDGE)].concat());
        ip(&["-n", &cli, "link", "set", &net.client_if, "master", BRIDGE]);
        ip(&["-n", &cli, "tuntap", "add", "dev", TAP, "mode", "tap"]);
        ip(&["-n", &cli, "link", "set", TAP, "master", BRIDGE]);
        for dev in [BRIDGE, TAP] {
            ip(&["-n", &cli, "link", "set", dev, "up"]);
        }
        let mut lab = Lab {
            mode,
            smbios: None,
            host: None,
            router: None,
            net,
        };
        if mode == Mode::Proxy {
            let rtr = format!("{}-rtr", lab.net.server_ns.trim_end_matches("-srv"));
            ip(&["netns", "add", &rtr]);
            lab.router = Some(Netns(rtr.clone()));
            ip(&[
                "-n",
                &cli,
                "link",
                "add",
                ROUTER_PEER,
                "type",
                "veth",
                "peer",
                "name",
                ROUTER_IF,
                "netns",
                &rtr,
            ]);
            ip(&["-n", &cli, "link", "set", ROUTER_PEER, "master", BRIDGE]);
            ip(&["-n", &cli, "link", "set", ROUTER_PEER, "up"]);
            let addr = format!("{}/24", lab.router_ip());
            ip(&["-n", &rtr, "addr", "add", &addr, "dev", ROUTER_IF]);
            ip(&["-n", &rtr, "link", "set", "lo", "up"]);
            ip(&["-n", &rtr, "link", "set", ROUTER_IF, "up"]);
        }
        Some(lab)
    }

    pub fn router_ip(&self) -> std::net::Ipv4Addr {
        self.net.ip(254)
    }

    /// The lab for the path users run: the server is the HOST namespace. A veth made here
    /// joins the host to the client namespace's bridge and takes the server address (the
    /// server namespace's end gives it up); `cozyboot up` binds dnsmasq to this veth only.
    /// Returns the lab and the host interface's name.
    pub fn on_host(mode: Mode) -> Option<(Lab, String)> {
        let mut lab = Lab::new(mode)?;
        let name = format!("cbfw{}", lab.net.subnet);
        let _ = Command::new("ip")
            .args(["link", "del", &name])
            .stderr(Stdio::null())
            .status();
        let cli = lab.net.client_ns.clone();
        ip(&["-n", &lab.net.server_ns, "addr", "flush", "dev", &lab.net.server_if]);
        ip(&["-n", &lab.net.server_ns, "link", "set", &lab.net.server_if, "down"]);
        ip(&[
            "link", "add", &name, "type", "veth", "peer", "name", "cb-hostp", "netns", &cli,
        ]);
        lab.host = Some(HostVeth(name.clone()));
        ip(&["-n", &cli, "link", "set", "cb-hostp", "master", BRIDGE]);
        ip(&["-n", &cli, "link", "set", "cb-hostp", "up"]);
        ip(&["addr", "add", &format!("{}/24", lab.net.server_ip()), "dev", &name]);
        ip(&["link", "set", &name, "up"]);
        Some((lab, name))
    }

    /// Starts the plain router DHCP of proxy mode (`None` in full mode).
    pub fn router(&self) -> Option<Router> {
        self.start_router().map(Router)
    }

    /// The plain DHCP server of proxy mode: addresses, a router option, nothing about booting.
    fn start_router(&self) -> Option<Logged> {
        let ns = &self.router.as_ref()?.0;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, DNSMASQ])
            .args(cozyboot::smoke::lab::router_dnsmasq_args(
                ROUTER_IF,
                (self.net.ip(100), self.net.ip(150)),
                self.router_ip(),
                self.net.server_ip(),
            ));
        let mut router = Logged::spawn(c, "the router's dnsmasq");
        assert!(
            router.wait_for("started, version", Duration::from_secs(5)),
            "the router's dnsmasq did not start:\n{}",
            router.log()
        );
        Some(router)
    }

    /// Lays down cozyboot's data dir from `rendered` (the matchbox tree with
    /// `render::write_tree`, bootloaders and kernel/initramfs in `assets/`), starts the
    /// matchbox double and dnsmasq with the rendered arguments, boots `client` and watches
    /// it until it powers off, fails, or [`BOOT_TIMEOUT`] passes.
    pub fn boot(&self, a: &Artifacts, s: &Settings, rendered: &Rendered, client: Client) -> Outcome {
        let double = matchbox_double(); // built once per process, not part of the setup time
        let t0 = Instant::now();
        let work = tempfile::tempdir().expect("tempdir");
        let data = work.path().join("data");
        let assets = data.join("assets");
        fs::create_dir_all(&assets).unwrap();
        render::write_tree(&data, &rendered.files()).expect("write_tree");
        for b in [Bootloader::Arm64Efi, Bootloader::X86_64Efi, Bootloader::Bios] {
            if a.omitted.contains(&b) {
                continue;
            }
            fs::copy(a.bootloader(b), assets.join(s.bootloaders.for_bootloader(b))).unwrap();
        }
        let mut split = None;
        for arch in [Arch::Arm64, Arch::Amd64] {
            let dir = assets.join("talos").join(arch.asset_dir());
            fs::create_dir_all(&dir).unwrap();
            let from = |f: &str| a.path(&format!("{}/{f}", arch.asset_dir()));
            let (kernel, initrd) = (
                cozyboot::artifacts::layout::KERNEL,
                cozyboot::artifacts::layout::INITRAMFS,
            );
            match a.talos {
                TalosSource::Pair => {
                    for f in [kernel, initrd] {
                        fs::copy(from(f), dir.join(f)).unwrap();
                    }
                }
                TalosSource::UkiSplit => {
                    let parts = cozyboot::artifacts::uki::split(&from(UKI), &dir.join(kernel), &dir.join(initrd))
                        .unwrap_or_else(|e| panic!("uki::split of {}: {e}", from(UKI).display()));
                    if arch == client.arch() {
                        split = Some(parts);
                    }
                }
                TalosSource::Uki => {
                    fs::copy(from(UKI), dir.join(UKI)).unwrap();
                }
            }
        }
        // dnsmasq runs as nobody: the path to its TFTP root must be traversable.
        for d in [work.path(), data.as_path()] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }

        // matchbox as cozyboot runs it, with the data dir where the container mounts it.
        let container_data = cozyboot::render::MATCHBOX_DATA;
        let mb_args: Vec<String> = rendered
            .matchbox_args
            .iter()
            .map(|arg| arg.replace(container_data, &data.display().to_string()))
            .collect();
        let mut mb_cmd = self.net.server_command(double.to_str().unwrap());
        mb_cmd.args(&mb_args);
        let mut matchbox = Logged::spawn(mb_cmd, "matchbox-double");
        assert!(
            matchbox.wait_for("Starting matchbox HTTP server", Duration::from_secs(10)),
            "matchbox-double did not start:\n{}",
            matchbox.log()
        );
        let router = self.start_router();
        let dnsmasq =
            DnsmasqProc::start(&self.net, rendered.dnsmasq_args.clone(), &assets).expect("dnsmasq is installed");
        let setup = t0.elapsed();

        let servers = Processes {
            dnsmasq: &dnsmasq,
            matchbox: &matchbox,
            router: router.as_ref(),
        };
        self.watch(a, s, rendered, client, &servers, work.path(), split, setup)
    }

    /// Boots `client` against servers already running, watches it until it powers off,
    /// fails, or [`BOOT_TIMEOUT`] passes, and says how far it got.
    #[allow(clippy::too_many_arguments)]
    pub fn watch(
        &self,
        a: &Artifacts,
        s: &Settings,
        rendered: &Rendered,
        client: Client,
        servers: &dyn Servers,
        work: &Path,
        split: Option<cozyboot::artifacts::uki::Parts>,
        setup: Duration,
    ) -> Outcome {
        let serial_path = work.join("serial.log");
        let qemu_cmd = client.qemu(a, TAP, &serial_path, self.smbios.as_ref());
        let qemu_line = format!("{qemu_cmd:?}");
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.net.client_ns])
            .arg(qemu_cmd.get_program())
            .args(qemu_cmd.get_args());
        let mut qemu = Logged::spawn(wrapped, "QEMU");

        // A profile that boots a UKI whole has no initrd to fetch.
        let arch_assets = format!("/talos/{}/", client.arch().asset_dir());
        let profiles = || {
            rendered
                .tree
                .profiles
                .iter()
                .filter(|p| p.boot.kernel.contains(&arch_assets))
        };
        let watch = Watch {
            client,
            s,
            bootloader_name: match client.bootloader() {
                Some(b) => Some(s.bootloaders.for_bootloader(b).to_string()),
                None if client.uboot() => Some(cozyboot::render::uboot::SCRIPT.to_string()),
                None => None,
            },
            initrd: profiles().any(|p| !p.boot.initrd.is_empty()),
            listen: profiles().any(|p| p.boot.args.iter().any(|a| a == LISTEN_ARG)),
        };
        let started = Instant::now();
        let mut reached: Vec<(Stage, Duration)> = Vec::new();
        let mut gave_up = None;
        let mut qemu_exit = None;
        let mut poweroff_seen = None;
        loop {
            let serial = read_lossy(&serial_path);
            let ev = Evidence {
                dnsmasq: servers.dnsmasq_log(),
                router: servers.router_log(),
                matchbox: servers.matchbox_log(),
                serial,
                qemu: qemu.log(),
            };
            for stage in watch.stages() {
                if !reached.iter().any(|(s, _)| *s == stage) && watch.reached(stage, &ev) {
                    reached.push((stage, started.elapsed()));
                }
            }
            if let Ok(Some(status)) = qemu.child.try_wait() {
                qemu_exit = Some(status.to_string());
                break;
            }
            if ev.serial.contains(POWEROFF) {
                let seen = *poweroff_seen.get_or_insert_with(Instant::now);
                if seen.elapsed() > POWEROFF_GRACE {
                    gave_up = Some("QEMU did not exit after the poweroff".to_string());
                    break;
                }
            } else if let Some(why) = watch.hopeless(&ev, &reached, started.elapsed()) {
                gave_up = Some(why);
                break;
            }
            if started.elapsed() > BOOT_TIMEOUT {
                gave_up = Some(format!("timed out after {BOOT_TIMEOUT:?}"));
                break;
            }
            thread::sleep(Duration::from_millis(250));
        }
        let boot_time = started.elapsed();
        let qemu_log = qemu.log();
        drop(qemu); // kills it if it still runs
        let evidence = Evidence {
            dnsmasq: servers.dnsmasq_log(),
            router: servers.router_log(),
            matchbox: servers.matchbox_log(),
            serial: read_lossy(&serial_path),
            qemu: qemu_log,
        };
        // QEMU may have written its last lines and exited between the loop's last read of
        // the evidence and its exit check: judge the final evidence too.
        for stage in watch.stages() {
            if !reached.iter().any(|(s, _)| *s == stage) && watch.reached(stage, &evidence) {
                reached.push((stage, boot_time));
            }
        }
        let failed_at = watch
            .stages()
            .into_iter()
            .find(|st| !reached.iter().any(|(r, _)| r == st));
        let cmdline = evidence.serial.lines().find_map(|l| {
            l.trim_end_matches('\r')
                .split_once(CMDLINE_PREFIX)
                .map(|(_, c)| c.trim().to_string())
        });
        let initrd_via = strip_escapes(&evidence.serial).lines().find_map(|l| {
            l.split_once("EFI stub: Loaded initrd from ")
                .map(|(_, v)| v.trim().to_string())
        });
        Outcome {
            client,
            mode: self.mode,
            split,
            reached,
            failed_at,
            cmdline,
            initrd_via,
            gave_up,
            qemu_exit,
            qemu_line,
            setup,
            boot_time,
            evidence,
        }
    }
}

/// Where the logs of the servers a boot talks to come from.
pub trait Servers {
    fn dnsmasq_log(&self) -> String;
    fn matchbox_log(&self) -> String;
    /// The plain router DHCP of proxy mode (empty in full mode).
    fn router_log(&self) -> String;
}

/// dnsmasq and the matchbox double as processes in the lab's server namespace.
struct Processes<'a> {
    dnsmasq: &'a DnsmasqProc,
    matchbox: &'a Logged,
    router: Option<&'a Logged>,
}

impl Servers for Processes<'_> {
    fn dnsmasq_log(&self) -> String {
        self.dnsmasq.log()
    }
    fn matchbox_log(&self) -> String {
        self.matchbox.log()
    }
    fn router_log(&self) -> String {
        self.router.map(Logged::log).unwrap_or_default()
    }
}

/// The router's dnsmasq of proxy mode, stopped on drop.
pub struct Router(Logged);

impl Router {
    pub fn log(&self) -> String {
        self.0.log()
    }
}

fn read_lossy(p: &Path) -> String {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
