//! Network namespaces for tests that speak DHCP and TFTP without touching a real interface.
//!
//! [`TestNet`] builds two namespaces joined by a veth pair (`cb-srv` in the server one,
//! `cb-cli` in the client one) on 10.213.X.0/24; [`DnsmasqProc`] runs the system's dnsmasq in
//! the server namespace; [`TestNet::run_in_client`] runs test code in the client namespace.
//!
//! Everything needs root and iproute2's `ip netns`. Without them a helper prints
//! `skipped: ...` and returns `None`, so the test returns early. Set
//! `COZYBOOT_REQUIRE_NETNS=1` to turn those skips into failures where the tests must run.

// Shared by several test crates, each of which uses only part of it.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Where Debian's `dnsmasq-base` installs dnsmasq.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// How long dnsmasq may take to log that it started.
const DNSMASQ_START_TIMEOUT: Duration = Duration::from_secs(5);

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// Returns `None` after saying why the test cannot run here, or panics when the environment
/// demands that it run.
fn skip<T>(reason: &str) -> Option<T> {
    super::guard::skip(Some("COZYBOOT_REQUIRE_NETNS"), reason)
}

mod sys {
    use std::os::raw::c_int;

    pub const CLONE_NEWNET: c_int = 0x4000_0000;

    extern "C" {
        pub fn setns(fd: c_int, nstype: c_int) -> c_int;
        pub fn geteuid() -> u32;
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { sys::geteuid() == 0 }
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"))
}

fn ip(args: &[&str]) {
    let output = run(Command::new("ip").args(args));
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ip -n <ns> <args>`, failing the test with ip's message.
pub fn ip_in(ns: &str, args: &[&str]) {
    let mut all = vec!["-n", ns];
    all.extend(args);
    ip(&all);
}

/// Two network namespaces joined by a veth pair: the server at 10.213.X.1, the client at .2.
pub struct TestNet {
    pub server_ns: String,
    pub client_ns: String,
    /// The server end of the veth pair, inside `server_ns`.
    pub server_if: String,
    /// The client end of the veth pair, inside `client_ns`.
    pub client_if: String,
    /// X in 10.213.X.0/24.
    pub subnet: u8,
}

impl TestNet {
    /// Builds the namespaces, or returns `None` (after printing why) when this machine can't.
    pub fn new() -> Option<Self> {
        if !is_root() {
            return skip("network namespaces need root");
        }
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(output) if output.status.success() => {}
            _ => return skip("`ip netns` is unavailable (install iproute2)"),
        }
        let pid = std::process::id();
        let n = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        let net = TestNet {
            server_ns: format!("cozyboot-{pid}-{n}-srv"),
            client_ns: format!("cozyboot-{pid}-{n}-cli"),
            server_if: "cb-srv".into(),
            client_if: "cb-cli".into(),
            // Distinct within this process; other processes' namespaces are isolated anyway.
            subnet: ((pid.wrapping_mul(31).wrapping_add(n)) % 254 + 1) as u8,
        };
        let added = run(Command::new("ip").args(["netns", "add", &net.server_ns]));
        if !added.status.success() {
            let reason = String::from_utf8_lossy(&added.stderr).trim().to_owned();
            return skip(&format!("`ip netns add` failed: {reason}"));
        }
        // From here on, Drop removes whatever was created.
        net.wire();
        Some(net)
    }

    fn wire(&self) {
        let (srv, cli) = (self.server_ns.as_str(), self.client_ns.as_str());
        ip(&["netns", "add", cli]);
        // Created inside the server namespace, so no name ever exists on the host.
        ip(&[
            "-n",
            srv,
            "link",
            "add",
            &self.server_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.client_if,
            "netns",
            cli,
        ]);
        for (ns, iface, host) in [(srv, self.server_if.as_str(), 1), (cli, &self.client_if, 2)] {
            ip(&["-n", ns, "addr", "add", &format!("{}/24", self.ip(host)), "dev", iface]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", iface, "up"]);
        }
    }

    /// 10.213.X.`host`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, host)
    }

    pub fn server_ip(&self) -> Ipv4Addr {
        self.ip(1)
    }

    /// A command that will run `program` inside the server namespace.
    pub fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.server_ns, program]);
        command
    }

    /// Runs `f` in the client namespace, on a thread of its own that ends with it, so no
    /// thread of the test process stays switched to another namespace.
    pub fn run_in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in(&self.client_ns, f)
    }

    /// Like [`TestNet::run_in_client`], in the server namespace.
    pub fn run_in_server<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in(&self.server_ns, f)
    }
}

/// Runs `f` on a thread inside the network namespace `ns` (any the test made).
pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = netns_path(ns);
    thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(&path);
                f()
            })
            .join()
    })
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            kill_all_in(ns);
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Moves the calling thread into the network namespace at `path`.
fn enter_netns(path: &Path) {
    let ns = File::open(path).unwrap_or_else(|err| panic!("opening {}: {err}", path.display()));
    // SAFETY: `ns` is an open namespace file descriptor for the duration of the call.
    let rc = unsafe { sys::setns(ns.as_raw_fd(), sys::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({}): {}", path.display(), std::io::Error::last_os_error());
}

/// A namespace with a process still in it would outlive `ip netns del`.
fn kill_all_in(ns: &str) {
    let Ok(output) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
}

/// dnsmasq running in a [`TestNet`]'s server namespace, logging to a buffer.
pub struct DnsmasqProc {
    child: Child,
    log: Arc<(Mutex<String>, Condvar)>,
    reader: Option<JoinHandle<()>>,
}

impl DnsmasqProc {
    /// Starts dnsmasq with `argv`, plus what a reproducible run needs: no config file, pid
    /// file or lease file, logs on stderr, and `--tftp-root=<tftp_root>` (which replaces any
    /// given). Files under `tftp_root` are made world-readable: dnsmasq serves only those.
    ///
    /// Returns `None` (after printing why) when dnsmasq is not installed; panics with its log
    /// when it does not start within 5 s.
    pub fn start(net: &TestNet, argv: Vec<String>, tftp_root: &Path) -> Option<Self> {
        if !Path::new(DNSMASQ).exists() {
            return skip(&format!("{DNSMASQ} not found (apt-get install dnsmasq-base)"));
        }
        make_world_readable(tftp_root);
        let mut child = net
            .server_command(DNSMASQ)
            .args(forced_args(tftp_root))
            .args(argv.iter().filter(|arg| !arg.starts_with("--tftp-root")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {DNSMASQ}: {err}"));
        let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let reader = Some(spawn_log_reader(stderr, Arc::clone(&log)));
        let dnsmasq = DnsmasqProc { child, log, reader };
        dnsmasq.wait_until_started();
        Some(dnsmasq)
    }

    /// Everything dnsmasq logged so far.
    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for `needle` to appear in the log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.log;
        let mut log = lock.lock().unwrap();
        while !log.contains(needle) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return false;
            }
            log = changed.wait_timeout(log, remaining).unwrap().0;
        }
        true
    }

    fn wait_until_started(&self) {
        // dnsmasq logs "started" after binding its sockets, so clients can send right away.
        if !self.wait_for_log("started, version", DNSMASQ_START_TIMEOUT) {
            panic!(
                "dnsmasq did not start within {DNSMASQ_START_TIMEOUT:?}; its log:\n{}",
                self.log()
            );
        }
    }
}

impl Drop for DnsmasqProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn forced_args(tftp_root: &Path) -> Vec<String> {
    let mut args: Vec<String> = cozyboot::smoke::lab::STANDALONE_DNSMASQ
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.push(format!("--tftp-root={}", tftp_root.display()));
    args
}

fn spawn_log_reader(stderr: ChildStderr, log: Arc<(Mutex<String>, Condvar)>) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let (lock, changed) = &*log;
            let mut log = lock.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
            changed.notify_all();
        }
    })
}

/// dnsmasq drops to an unprivileged user and, as root, refuses files others cannot read.
fn make_world_readable(path: &Path) {
    let meta = fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let extra = if meta.is_dir() { 0o555 } else { 0o444 };
    let mode = meta.permissions().mode() | extra;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("chmod {}: {err}", path.display()));
    if meta.is_dir() {
        for entry in fs::read_dir(path).into_iter().flatten().flatten() {
            make_world_readable(&entry.path());
        }
    }
}
