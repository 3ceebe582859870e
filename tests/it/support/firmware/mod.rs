//! Real firmware clients (QEMU with AAVMF, OVMF or SeaBIOS + iPXE) booting through cozyboot's
//! rendered configuration, served by the real dnsmasq and the matchbox double, on a private
//! network made of namespaces this module creates and deletes. See docs/firmware-tests.md.
//!
//! The network of one boot ([`Lab`]):
//!
//! ```text
//!  server ns (TestNet)            client ns (TestNet)                   router ns (proxy mode)
//!  cb-srv 10.213.X.1  <-veth->  cb-cli ─┐                       ┌─ cb-rtrp <-veth-> cb-rtr 10.213.X.254
//!  dnsmasq (cozyboot's argv)            cb-br (bridge) ─ cb-tap ─ QEMU         dnsmasq (addresses only)
//!  matchbox-double :8080
//! ```
//!
//! Nothing is attached to a host interface: every link is created inside a namespace, QEMU
//! gets only the tap (`-nodefaults`, so no user-mode network either), and dropping the [`Lab`]
//! kills every process in its namespaces and deletes them.


use super::netns::{DnsmasqProc, TestNet, DNSMASQ};
use cozyboot::arch::{Arch, Bootloader};
use cozyboot::render::{self, Rendered};
use cozyboot::settings::Settings;
use cozyboot::smoke::report::strip_escapes;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What `scripts/firmware-artifacts` builds, unless `COZYBOOT_FIRMWARE_DIR` says otherwise.
pub const DEFAULT_ARTIFACTS: &str = "/var/cache/cozyboot-firmware/out";
/// The whole of one boot, firmware to powered-off Linux. Measured here: 15–60 s.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// After matchbox answered `/ipxe` with a 404, how long to wait for iPXE to try anything else.
const AFTER_404: Duration = Duration::from_secs(15);
/// After the initrd download, how long a UEFI kernel may take to say it loaded the initrd.
const NO_INITRD_AFTER: Duration = Duration::from_secs(30);
/// After the initrd download, how long Linux may take to run /init (measured: about 5 s).
const LINUX_AFTER_INITRD: Duration = Duration::from_secs(90);
/// After the marker, how long QEMU may take to power off before it is killed.
const POWEROFF_GRACE: Duration = Duration::from_secs(20);

pub const MARKER: &str = "COZYBOOT-BOOT-OK";
/// The kernel argument that makes the test /init stand in for Talos's maintenance mode: lease
/// an address by DHCP and answer one TCP connection on the port (see scripts/firmware-artifacts).
pub const LISTEN_ARG: &str = "cozyboot.listen=50000";
/// What /init prints once it listens: `COZYBOOT-LISTENING ip=<addr> port=<port>`.
pub const LISTENING: &str = "COZYBOOT-LISTENING";
/// What /init prints after it answered a connection (then it powers off).
pub const ANSWERED: &str = "COZYBOOT-ANSWERED";
pub const CMDLINE_PREFIX: &str = "COZYBOOT-CMDLINE: ";
const POWEROFF: &str = "COZYBOOT-POWEROFF";

/// A missing artifact fails the test where tests must run (CI, `scripts/test`, or
/// `COZYBOOT_REQUIRE_FIRMWARE=1`), see [`super::guard`].
pub fn skip<T>(reason: &str) -> Option<T> {
    super::guard::skip(Some("COZYBOOT_REQUIRE_FIRMWARE"), reason)
}

/// One boot at a time per test process: QEMU's software emulation wants both cores.
/// The UKI's file name, in the artifacts (`<arch>/vmlinuz.efi`, as in a Talos installer's
/// `/usr/install/<arch>/`) and in the assets when it is served whole.
pub const UKI: &str = "vmlinuz.efi";

pub fn one_boot_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ------------------------------------------------------------------------------ artifacts

/// The line `scripts/firmware-artifacts` writes into `manifest.txt` since its /init writes
/// only to /dev/console. Older artifacts wrote to the UARTs directly and would let a boot
/// whose console is not the serial port pass.
pub const MANIFEST_STAMP: &str = "initramfs-output: /dev/console";
/// The command line embedded in the test UKIs (`<arch>/vmlinuz.efi`): not cozyboot's.
pub const UKI_EMBEDDED_CMDLINE: &str = "console=tty0 cozyboot.embedded=1";

/// The files `scripts/firmware-artifacts` lays out: Debian's kernels, iPXE binaries, the
/// test initramfs, a UKI per architecture made of the two, and links to the firmware images.
pub struct Artifacts {
    pub dir: PathBuf,
    /// Bootloaders served instead of the ones in `dir` (see [`Artifacts::with_bootloader`]).
    overrides: Vec<(Bootloader, PathBuf)>,
    /// Bootloaders left out of the assets (see [`Artifacts::without_bootloader`]).
    omitted: Vec<Bootloader>,
    /// How the Talos kernel and initramfs are laid down in the assets.
    pub talos: TalosSource,
}

/// Where the kernel and initramfs served as `talos/<arch>/...` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TalosSource {
    /// `<arch>/vmlinuz` and `<arch>/initramfs.xz` as two files (installers before Talos 1.10).
    Pair,
    /// Only the UKI `<arch>/vmlinuz.efi` (Talos >= 1.10 installers): `cozyboot::uki::split`
    /// takes its `.linux` and `.initrd` sections out to `talos/<arch>/vmlinuz` and
    /// `talos/<arch>/initramfs.xz`, as `cozyboot up` does.
    UkiSplit,
    /// The UKI itself, served as `talos/<arch>/vmlinuz.efi` (and nothing else).
    Uki,
}

impl Artifacts {
    const FILES: &'static [&'static str] = &[
        "ipxe/ipxe-arm64.efi",
        "ipxe/ipxe.efi",
        "ipxe/undionly.kpxe",
        "ipxe/ipxe-bookworm.efi",
        "arm64/vmlinuz",
        "arm64/initramfs.xz",
        "amd64/vmlinuz",
        "amd64/initramfs.xz",
        "arm64/vmlinuz.efi",
        "amd64/vmlinuz.efi",
        "firmware/QEMU_EFI.fd",
        "firmware/OVMF.fd",
        "manifest.txt",
    ];
    const PROGRAMS: &'static [&'static str] = &["/usr/bin/qemu-system-aarch64", "/usr/bin/qemu-system-x86_64"];

    /// Finds them, or returns `None` after printing what is missing (run
    /// `scripts/firmware-artifacts`); panics instead where they are required.
    pub fn find() -> Option<Self> {
        let dir = std::env::var_os("COZYBOOT_FIRMWARE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ARTIFACTS));
        let missing: Vec<String> = Self::FILES
            .iter()
            .map(|f| dir.join(f))
            .chain(Self::PROGRAMS.iter().map(PathBuf::from))
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            return skip(&format!(
                "firmware test artifacts missing ({}); run scripts/firmware-artifacts",
                missing.join(", ")
            ));
        }
        let manifest = fs::read_to_string(dir.join("manifest.txt")).unwrap_or_default();
        if !manifest.lines().any(|l| l.trim() == MANIFEST_STAMP) {
            return skip(&format!(
                "{} was made by an older scripts/firmware-artifacts (no `{MANIFEST_STAMP}`: its \
                 /init writes to the UARTs directly); run scripts/firmware-artifacts again",
                dir.display()
            ));
        }
        Some(Artifacts {
            dir,
            overrides: Vec::new(),
            omitted: Vec::new(),
            talos: TalosSource::Pair,
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Serves `file` as bootloader `b` (e.g. an older iPXE).
    pub fn with_bootloader(mut self, b: Bootloader, file: impl Into<PathBuf>) -> Self {
        self.overrides.push((b, file.into()));
        self
    }

    /// Leaves bootloader `b` out of the TFTP root, as a data dir nobody provisioned.
    pub fn without_bootloader(mut self, b: Bootloader) -> Self {
        self.omitted.push(b);
        self
    }

    /// Lays down the Talos kernel and initramfs from `source` (see [`TalosSource`]).
    pub fn with_talos(mut self, source: TalosSource) -> Self {
        self.talos = source;
        self
    }

    /// The arm64 iPXE, x86_64 iPXE and BIOS iPXE binaries cozyboot provisions.
    fn bootloader(&self, b: Bootloader) -> PathBuf {
        if let Some((_, file)) = self.overrides.iter().rev().find(|(o, _)| *o == b) {
            return file.clone();
        }
        self.path(match b {
            Bootloader::Arm64Efi => "ipxe/ipxe-arm64.efi",
            Bootloader::X86_64Efi => "ipxe/ipxe.efi",
            Bootloader::Bios => "ipxe/undionly.kpxe",
        })
    }
}

/// Imports a talos image in the shape of a Talos >= 1.10 installer: only the ukify-built UKIs
/// (`/usr/install/<arch>/vmlinuz.efi`), labelled as a test's. `work` holds the tar.
pub fn uki_image(a: &Artifacts, reference: &str, work: &Path) {
    let root = work.join("image-root");
    for arch in ["arm64", "amd64"] {
        let dir = root.join("usr/install").join(arch);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(a.path(&format!("{arch}/{UKI}")), dir.join(UKI)).unwrap();
    }
    let tar = work.join("image.tar");
    let ok = Command::new("tar")
        .args(["-C", root.to_str().unwrap(), "-cf", tar.to_str().unwrap(), "."])
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar of the UKI image");
    let out = Command::new("docker")
        .args(["import", "--change", "LABEL io.cozyboot.test=firmware-up"])
        .arg(&tar)
        .arg(reference)
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------------------ clients

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `qemu-system-aarch64 -M virt`, AAVMF: DHCP option 93 = 11.
    Arm64Uefi,
    /// `qemu-system-x86_64 -M q35`, OVMF: option 93 = 7.
    X64Uefi,
    /// `qemu-system-x86_64 -M pc`, SeaBIOS running QEMU's iPXE NIC ROM: iPXE from the start,
    /// `${buildarch}` = i386.
    X86Bios,
}

impl Client {

    pub fn arch(self) -> Arch {
        match self {
            Client::Arm64Uefi => Arch::Arm64,
            Client::X64Uefi | Client::X86Bios => Arch::Amd64,
        }
    }

    /// The bootloader the firmware is handed over TFTP; `None` when the firmware is iPXE.
    pub fn bootloader(self) -> Option<Bootloader> {
        match self {
            Client::Arm64Uefi => Some(Bootloader::Arm64Efi),
            Client::X64Uefi => Some(Bootloader::X86_64Efi),
            Client::X86Bios => None,
        }
    }

    /// Distinct per client, none in a Raspberry Pi block.
    pub fn mac(self) -> &'static str {
        match self {
            Client::Arm64Uefi => "52:54:00:c0:0b:11",
            Client::X64Uefi => "52:54:00:c0:0b:07",
            Client::X86Bios => "52:54:00:c0:0b:00",
        }
    }

    /// What the kernel prints as `uname -m`.
    pub fn uname_m(self) -> &'static str {
        match self {
            Client::Arm64Uefi => "aarch64",
            Client::X64Uefi | Client::X86Bios => "x86_64",
        }
    }

    /// The product's QEMU command line (`cozyboot smoke`'s), under TCG as CI runs it.
    fn qemu(self, a: &Artifacts, tap: &str, serial: &Path) -> Command {
        use cozyboot::smoke::{vm, Firmware, Machine};
        let (program, firmware, fw_file, mem) = match self {
            Client::Arm64Uefi => (
                "qemu-system-aarch64",
                Firmware::Uefi,
                Some("firmware/QEMU_EFI.fd"),
                1024,
            ),
            Client::X64Uefi => ("qemu-system-x86_64", Firmware::Uefi, Some("firmware/OVMF.fd"), 512),
            Client::X86Bios => ("qemu-system-x86_64", Firmware::Bios, None, 512),
        };
        let spec = vm::VmSpec {
            machine: Machine::new(self.arch(), firmware).expect("a machine QEMU emulates"),
            accel: vm::Accel::Tcg,
            qemu: program.into(),
            firmware: fw_file.map(|f| a.path(f)),
            tap: tap.to_string(),
            mac: self.mac().to_string(),
            serial: serial.to_path_buf(),
            memory_mib: mem,
        };
        let mut c = Command::new(program);
        c.args(spec.args());
        c
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Client::Arm64Uefi => "ARM64 UEFI (AAVMF)",
            Client::X64Uefi => "x86_64 UEFI (OVMF)",
            Client::X86Bios => "x86 BIOS (SeaBIOS + iPXE ROM)",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// cozyboot's dnsmasq is the DHCP server.
    Full,
    /// A plain DHCP server (the "home router", in its own namespace) hands out addresses;
    /// cozyboot's dnsmasq answers as proxy DHCP.
    Proxy,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Full => "full DHCP",
            Mode::Proxy => "proxy DHCP beside a router",
        })
    }
}

// ------------------------------------------------------------------------------ processes

/// A child whose stderr (or stdout) is collected line by line.
struct Logged {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Logged {
    fn spawn(mut command: Command, what: &str) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let collect = |r: Box<dyn Read + Send>, log: Arc<Mutex<String>>| {
            thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            })
        };
        let out = collect(Box::new(stdout), Arc::clone(&log));
        let err = collect(Box::new(stderr), Arc::clone(&log));
        let reader = Some(thread::spawn(move || {
            let _ = out.join();
            let _ = err.join();
        }));
        Logged { child, log, reader }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until `needle` is in the log; false at the timeout or when the
    /// process exited without logging it.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                thread::sleep(Duration::from_millis(100)); // the last lines
                return self.log().contains(needle);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// `target/<profile>`, from this test binary's path (`target/<profile>/deps/<name>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Where each boot's full logs go: `COZYBOOT_FIRMWARE_LOGS`, else
/// `target/firmware-boot-logs`, one folder per boot.
pub fn logs_dir() -> PathBuf {
    std::env::var_os("COZYBOOT_FIRMWARE_LOGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().parent().expect("target dir").join("firmware-boot-logs"))
}

/// The matchbox double's binary, built once per test process with `cargo build -p
/// matchbox-double` into this build's target dir (or `COZYBOOT_MATCHBOX_DOUBLE=<path>`).
pub fn matchbox_double() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("COZYBOOT_MATCHBOX_DOUBLE") {
            return PathBuf::from(p);
        }
        let profile_dir = profile_dir();
        let target_dir = profile_dir.parent().expect("target dir");
        let bin = profile_dir.join("matchbox-double");
        // `cargo test --workspace` has built it already (the double's own tests need it); a
        // nested cargo build would only re-resolve features and maybe relink.
        if newer_than_sources(&bin) {
            return bin;
        }
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let t0 = Instant::now();
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-q", "-p", "matchbox-double", "--bin", "matchbox-double"])
            .env("CARGO_TARGET_DIR", target_dir);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("running cargo build -p matchbox-double");
        assert!(status.success(), "cargo build -p matchbox-double failed");
        println!("built matchbox-double in {:.1?}", t0.elapsed());
        bin
    })
}

/// Whether `bin` exists and is newer than the double's sources and Cargo.lock.
fn newer_than_sources(bin: &Path) -> bool {
    fn newest(p: &Path) -> std::time::SystemTime {
        let Ok(meta) = fs::metadata(p) else {
            return std::time::SystemTime::UNIX_EPOCH;
        };
        let mut t = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        if meta.is_dir() {
            for e in fs::read_dir(p).into_iter().flatten().flatten() {
                t = t.max(newest(&e.path()));
            }
        }
        t
    }
    let Ok(built) = fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [root.join("testkit/matchbox-double"), root.join("Cargo.lock")];
    sources.iter().all(|s| newest(s) <= built)
}

// ------------------------------------------------------------------------------ the lab

fn ip(args: &[&str]) {
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
            let (kernel, initrd) = (cozyboot::render::talos::KERNEL, cozyboot::render::talos::INITRAMFS);
            match a.talos {
                TalosSource::Pair => {
                    for f in [kernel, initrd] {
                        fs::copy(from(f), dir.join(f)).unwrap();
                    }
                }
                TalosSource::UkiSplit => {
                    let parts = cozyboot::uki::split(&from(UKI), &dir.join(kernel), &dir.join(initrd))
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
        split: Option<cozyboot::uki::Parts>,
        setup: Duration,
    ) -> Outcome {
        let serial_path = work.join("serial.log");
        let qemu_cmd = client.qemu(a, TAP, &serial_path);
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
            bootloader_name: client.bootloader().map(|b| s.bootloaders.for_bootloader(b).to_string()),
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

// ------------------------------------------------------------------------------ stages

/// The steps of a network boot, in order; each is recognised by the evidence it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// dnsmasq's reply carried the firmware's boot file (for the BIOS client, already iPXE,
    /// the `boot.ipxe` URL).
    DhcpOffer,
    /// dnsmasq sent the bootloader over TFTP (UEFI clients only).
    Tftp,
    /// iPXE fetched `/boot.ipxe` from matchbox.
    BootIpxe,
    /// iPXE fetched `/ipxe?...` and matchbox found a profile for its labels.
    Ipxe,
    /// iPXE fetched the kernel from `/assets/talos/<arch>/vmlinuz`.
    Kernel,
    /// iPXE fetched the initramfs.
    Initrd,
    /// Linux ran our /init: the marker is on the serial console.
    Linux,
    /// /init, standing in for Talos in maintenance mode ([`LISTEN_ARG`]), leased an address
    /// and a connection to its port came (a `cozyboot nodes` probe).
    Answered,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::DhcpOffer => "DHCP offer",
            Stage::Tftp => "TFTP",
            Stage::BootIpxe => "boot.ipxe",
            Stage::Ipxe => "/ipxe",
            Stage::Kernel => "kernel",
            Stage::Initrd => "initrd",
            Stage::Linux => "Linux",
            Stage::Answered => "TCP answered",
        })
    }
}

pub struct Evidence {
    pub dnsmasq: String,
    pub router: String,
    pub matchbox: String,
    pub serial: String,
    pub qemu: String,
}

struct Watch<'a> {
    client: Client,
    s: &'a Settings,
    bootloader_name: Option<String>,
    /// Whether the client's profile has an initrd (not when it boots a UKI whole).
    initrd: bool,
    /// Whether /init is asked to stand in for Talos's maintenance mode ([`LISTEN_ARG`]).
    listen: bool,
}

impl Watch<'_> {
    fn stages(&self) -> Vec<Stage> {
        let mut v = vec![Stage::DhcpOffer];
        if self.client.bootloader().is_some() {
            v.push(Stage::Tftp);
        }
        v.extend([Stage::BootIpxe, Stage::Ipxe, Stage::Kernel]);
        if self.initrd {
            v.push(Stage::Initrd);
        }
        v.push(Stage::Linux);
        if self.listen {
            v.push(Stage::Answered);
        }
        v
    }

    fn asset(&self, file: &str) -> String {
        format!("HTTP GET /assets/talos/{}/{file}", self.client.arch().asset_dir())
    }

    fn reached(&self, stage: Stage, ev: &Evidence) -> bool {
        match stage {
            Stage::DhcpOffer => {
                let file = match &self.bootloader_name {
                    Some(name) => name.clone(),
                    None => format!("{}/boot.ipxe", self.s.http_base()),
                };
                // With --log-dhcp, full mode logs the option sent (`sent size: N option: 67
                // bootfile-name  <file>`), proxy mode its answer on 4011 (`bootfile name: <file>`).
                ev.dnsmasq.lines().any(|l| {
                    (l.contains("option: 67 bootfile-name") || l.contains("bootfile name: "))
                        && l.trim_end().ends_with(&file)
                })
            }
            Stage::Tftp => {
                let name = self.bootloader_name.as_deref().unwrap_or("");
                ev.dnsmasq
                    .lines()
                    .any(|l| l.contains("sent ") && l.contains(&format!("/{name} to ")))
            }
            Stage::BootIpxe => ev.matchbox.contains("HTTP GET /boot.ipxe"),
            Stage::Ipxe => {
                // The request, then the next request with no 404 ("No matching profile")
                // between. matchbox logs the 404 on a line of its own just after the request,
                // so the request alone, read a moment too early, does not tell.
                ev.matchbox.find("HTTP GET /ipxe?").is_some_and(|at| {
                    let after = &ev.matchbox[at + 1..];
                    after.find("HTTP GET").is_some_and(|next| {
                        let between = &after[..next];
                        !between.contains("No matching") && !between.contains("No profile named")
                    })
                })
            }
            Stage::Kernel => ev.matchbox.contains(&self.asset(cozyboot::render::talos::KERNEL)),
            Stage::Initrd => ev.matchbox.contains(&self.asset(cozyboot::render::talos::INITRAMFS)),
            Stage::Linux => ev.serial.contains(MARKER),
            Stage::Answered => ev.serial.contains(ANSWERED),
        }
    }

    /// Gives up early when the client can no longer get further, so that a broken
    /// configuration fails in seconds rather than at the timeout.
    fn hopeless(&self, ev: &Evidence, reached: &[(Stage, Duration)], now: Duration) -> Option<String> {
        let has = |st: Stage| reached.iter().any(|(s, _)| *s == st);
        let at = |st: Stage| reached.iter().find(|(s, _)| *s == st).map(|(_, t)| *t);
        // EDK2 tries PXE over IPv4 first; moving on to IPv6 or HTTP boot means IPv4 PXE failed.
        if !has(Stage::Tftp)
            && self.client.bootloader().is_some()
            && ["PXE-E16", ">>Start PXE over IPv6", ">>Start HTTP Boot"]
                .iter()
                .any(|m| ev.serial.contains(m))
        {
            return Some("the UEFI firmware gave up on PXE over IPv4".into());
        }
        // matchbox said 404 to /ipxe and nothing else happened for a while.
        if has(Stage::BootIpxe) && !has(Stage::Ipxe) && ev.matchbox.contains("No matching") {
            let since = ev.matchbox.matches("HTTP GET /ipxe?").count();
            if since > 0 && now > at(Stage::BootIpxe).unwrap_or_default() + AFTER_404 {
                return Some("matchbox answered /ipxe with 404 (no group for the labels iPXE sent)".into());
            }
        }
        // The last download before the kernel runs: the initrd, or the UKI.
        let last_download = if self.initrd {
            at(Stage::Initrd)
        } else {
            at(Stage::Kernel)
        };
        if let Some(t) = last_download {
            // A UEFI kernel's EFI stub says where it found the initramfs within a second or
            // two (Debian's arm64 and amd64 kernels both do); without that line it found none (iPXE offered no LoadFile2 initrd and the
            // command line named none) and Linux will not run /init.
            if self.client.bootloader().is_some()
                && now > t + NO_INITRD_AFTER
                && !ev.serial.contains("EFI stub: Loaded initrd")
            {
                return Some("the kernel's EFI stub loaded no initrd".into());
            }
            if !has(Stage::Linux) && now > t + LINUX_AFTER_INITRD {
                return Some(format!("no marker {LINUX_AFTER_INITRD:?} after the initrd was fetched"));
            }
        }
        if let Some(line) = ev.serial.lines().find(|l| l.contains("COZYBOOT-NET: ")) {
            return Some(format!("/init could not listen: {}", line.trim()));
        }
        if ev.serial.contains("Kernel panic") {
            return Some("Linux panicked".into());
        }
        if ev.serial.contains("No bootable device") {
            return Some("SeaBIOS found no bootable device".into());
        }
        None
    }
}

// ------------------------------------------------------------------------------ outcome

pub struct Outcome {
    pub client: Client,
    pub mode: Mode,
    /// With [`TalosSource::UkiSplit`]: what `cozyboot::uki::split` took out of the client's
    /// architecture's UKI.
    pub split: Option<cozyboot::uki::Parts>,
    /// Stages reached, with the time since QEMU started.
    pub reached: Vec<(Stage, Duration)>,
    /// The first stage not reached; `None` when Linux ran our /init.
    pub failed_at: Option<Stage>,
    /// `/proc/cmdline` as /init printed it.
    pub cmdline: Option<String>,
    /// How the kernel's EFI stub found the initramfs (`EFI stub: Loaded initrd from ...`).
    pub initrd_via: Option<String>,
    pub gave_up: Option<String>,
    pub qemu_exit: Option<String>,
    pub qemu_line: String,
    /// Laying down the data dir and starting matchbox and dnsmasq.
    pub setup: Duration,
    /// QEMU start to power-off (or to giving up).
    pub boot_time: Duration,
    pub evidence: Evidence,
}

impl Outcome {
    /// The journey `cozyboot nodes` reads from this boot's dnsmasq and matchbox logs for the
    /// VM's MAC (the same parsers and fold the command uses).
    pub fn journey(&self) -> Option<cozyboot::journey::model::Journey> {
        use cozyboot::journey::{dnsmasq_log, matchbox_log, model};
        let mut events = dnsmasq_log::events(&self.evidence.dnsmasq);
        events.extend(matchbox_log::events(&self.evidence.matchbox));
        model::fold(events).remove(self.client.mac())
    }

    /// The address the VM leased, read straight from the DHCP server's `DHCPACK` line (ours in
    /// full mode, the router's in proxy mode): what really happened, independent of the parser.
    pub fn leased_ip(&self) -> Option<std::net::Ipv4Addr> {
        let mac = self.client.mac();
        [&self.evidence.dnsmasq, &self.evidence.router]
            .into_iter()
            .flat_map(|log| log.lines())
            .filter(|l| l.contains("DHCPACK(") && l.contains(mac))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
            .next_back()
    }

    /// The address /init leased and listened on ([`LISTEN_ARG`]), as it printed it.
    pub fn listening_ip(&self) -> Option<std::net::Ipv4Addr> {
        self.evidence.serial.lines().find_map(|l| {
            let rest = l.split_once(LISTENING)?.1;
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix("ip=")?.parse().ok())
        })
    }

    /// The journey cozyboot reports equals what happened in this boot: the architecture the
    /// firmware and iPXE gave, the leased address, and every stage through the initramfs.
    pub fn assert_journey(&self) {
        use cozyboot::journey::model::Stage as J;
        let j = self
            .journey()
            .unwrap_or_else(|| panic!("cozyboot's journeys hold no {}:\n{}", self.client.mac(), self.report()));
        let (code, buildarch) = match self.client {
            Client::Arm64Uefi => (11, "arm64"),
            Client::X64Uefi => (7, "x86_64"),
            Client::X86Bios => (0, "i386"),
        };
        assert_eq!(j.client_arch, Some(code), "client-arch in {j:#?}");
        assert_eq!(j.ipxe_arch.as_deref(), Some(buildarch), "iPXE arch in {j:#?}");
        assert_eq!(j.proxy, self.mode == Mode::Proxy, "proxy in {j:#?}");
        let leased = self.leased_ip();
        assert!(
            leased.is_some(),
            "no DHCPACK for {} in the logs:\n{}",
            self.client.mac(),
            self.report()
        );
        assert_eq!(j.ip, leased, "address in {j:#?}");
        let mut want = vec![J::Dhcp];
        if self.client.bootloader().is_some() {
            want.push(J::Tftp);
        }
        want.extend([J::BootIpxe, J::Profile, J::Kernel]);
        if self.reached.iter().any(|(s, _)| *s == Stage::Initrd) {
            want.push(J::Initramfs);
        }
        let got: Vec<J> = j.stages.keys().copied().collect();
        assert_eq!(got, want, "stages of {j:#?}\n{}", self.report());
        assert_eq!(j.attempts, 1, "one boot, one attempt: {j:#?}");
    }

    /// One line: what was reached and when.
    pub fn timeline(&self) -> String {
        let stages: Vec<String> = self
            .reached
            .iter()
            .map(|(s, t)| format!("{s} {:.1}s", t.as_secs_f64()))
            .collect();
        let via = match &self.initrd_via {
            Some(v) => format!("; initrd via {v}"),
            None => String::new(),
        };
        format!(
            "{} / {}: {} in {:.1}s (setup {:.1}s): {}{via}",
            self.client,
            self.mode,
            match self.failed_at {
                None => "booted".to_string(),
                Some(st) => format!("FAILED at {st}"),
            },
            self.boot_time.as_secs_f64(),
            self.setup.as_secs_f64(),
            stages.join(", ")
        )
    }

    /// Writes the full logs to `<logs_dir>/<name>/` and returns that folder.
    pub fn save(&self, name: &str) -> PathBuf {
        let dir = logs_dir().join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the logs dir");
        let e = &self.evidence;
        for (file, text) in [
            ("dnsmasq.log", e.dnsmasq.as_str()),
            ("router-dnsmasq.log", e.router.as_str()),
            ("matchbox.log", e.matchbox.as_str()),
            ("serial.log", e.serial.as_str()),
            ("summary.txt", self.report().as_str()),
        ] {
            fs::write(dir.join(file), text).expect("writing a log");
        }
        dir
    }

    /// The evidence of the stage that broke (and its neighbours), for a failure message.
    pub fn report(&self) -> String {
        let tail = |s: &str, n: usize| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let serial = strip_escapes(&self.evidence.serial);
        let mut r = String::new();
        r.push_str(&self.timeline());
        r.push('\n');
        if let Some(st) = self.failed_at {
            r.push_str(&format!("broken stage: {st} — {}\n", explain(st, self.client)));
        }
        if self.failed_at == Some(Stage::Linux) && self.qemu_exit.as_deref() == Some("exit status: 0") {
            r.push_str(
                "hint: QEMU powered off, so Linux ran /init, but its marker (written to /dev/console) \
                 is not on the serial log: the last console= on the kernel line is not the serial port\n",
            );
        }
        if let Some(g) = &self.gave_up {
            r.push_str(&format!("stopped: {g}\n"));
        }
        if let Some(e) = &self.qemu_exit {
            r.push_str(&format!("QEMU exited: {e}\n"));
        }
        r.push_str(&format!("QEMU: {}\n", self.qemu_line));
        // QEMU's own output says why it refused to start or stopped (a firmware file it could
        // not open, an accelerator it could not use), which no other log shows.
        if !self.evidence.qemu.trim().is_empty() {
            r.push_str(&format!("--- QEMU's output (last 20 lines):\n{}\n", tail(&self.evidence.qemu, 20)));
        }
        r.push_str(&format!(
            "--- cozyboot's dnsmasq (last 60 lines):\n{}\n",
            tail(&self.evidence.dnsmasq, 60)
        ));
        if self.mode == Mode::Proxy {
            r.push_str(&format!(
                "--- router dnsmasq (last 30 lines):\n{}\n",
                tail(&self.evidence.router, 30)
            ));
        }
        r.push_str(&format!(
            "--- matchbox-double (last 40 lines):\n{}\n",
            tail(&self.evidence.matchbox, 40)
        ));
        r.push_str(&format!("--- serial console (last 60 lines):\n{}\n", tail(&serial, 60)));
        r
    }
}

fn explain(st: Stage, client: Client) -> &'static str {
    match st {
        Stage::DhcpOffer => match client {
            Client::X86Bios => "dnsmasq never offered the boot.ipxe URL to the iPXE ROM",
            _ => "dnsmasq never offered this firmware its bootloader (client-arch mapping?)",
        },
        Stage::Tftp => "the firmware got a boot file but never fetched it over TFTP",
        Stage::BootIpxe => "iPXE never fetched /boot.ipxe (did the bootloader run? did iPXE get the URL?)",
        Stage::Ipxe => "matchbox had no profile for the labels iPXE sent (groups vs ${buildarch})",
        Stage::Kernel => "the /ipxe script did not lead iPXE to the kernel",
        Stage::Initrd => "iPXE did not fetch the initramfs",
        Stage::Linux => "the kernel did not run our /init (initramfs not found? see the serial console)",
        Stage::Answered => "/init listened (or found no DHCP lease: COZYBOOT-NET) but no connection came to its port",
    }
}
