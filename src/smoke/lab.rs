//! The private network of one smoke run, and its removal.
//!
//! ```text
//!   host namespace                      cozysmoke-<pid> namespace
//!   csm<pid> 10.X.Y.1/24  <-- veth -->  hostp ─┐
//!   (the site's --iface: dnsmasq               br0 ─ tap0 ─ QEMU
//!    binds it, matchbox answers on it)         (proxy mode: br0 has 10.X.Y.254, the router DHCP)
//! ```
//!
//! Only the veth's host end lives in the host namespace, on a /24 that no route or address
//! of the host overlaps; the VM's tap, the bridge and proxy mode's router DHCP are inside the
//! run's own namespace. Names carry the process id, so two runs can coexist. Dropping the
//! [`Lab`] kills what runs in the namespace and deletes the link and the namespace.

use crate::error::Error;
use ipnet::Ipv4Net;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BRIDGE: &str = "br0";
pub const TAP: &str = "tap0";
const HOST_PEER: &str = "hostp";
const SERVER_HOST: u8 = 1;
const ROUTER_HOST: u8 = 254;
const RANGE: (u8, u8) = (100, 150);

/// The names of one run's namespace and host link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub netns: String,
    /// The veth end in the host namespace (at most 15 bytes, the kernel's limit).
    pub veth: String,
}

impl Names {
    pub fn for_pid(pid: u32) -> Names {
        Names {
            netns: format!("cozysmoke-{pid}"),
            veth: format!("csm{pid}"),
        }
    }
}

/// The first /24 of a few private blocks that nothing in `taken` overlaps, starting at an
/// offset from `seed` so that concurrent runs tend to pick different ones. A default route
/// (prefix 0) overlaps everything and says nothing about what is on-link, so it is ignored.
pub fn pick_subnet(taken: &[Ipv4Net], seed: u32) -> Option<Ipv4Net> {
    let blocks: [(u8, u8); 3] = [(10, 247), (172, 30), (192, 168)];
    for (a, b) in blocks {
        for i in 0..256u32 {
            let c = ((seed + i) % 256) as u8;
            let net = Ipv4Net::new(Ipv4Addr::new(a, b, c, 0), 24).expect("a /24");
            let clash = taken
                .iter()
                .filter(|t| t.prefix_len() > 0)
                .any(|t| t.contains(&net.network()) || net.contains(&t.network()));
            if !clash {
                return Some(net);
            }
        }
    }
    None
}

/// The destinations of `ip -4 -o route show table all` and the networks of `ip -4 -o addr`.
pub fn parse_taken(routes: &str, addrs: &str) -> Vec<Ipv4Net> {
    const TYPES: &[&str] = &[
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "anycast",
        "unreachable",
        "prohibit",
        "blackhole",
        "throw",
        "nat",
    ];
    let net = |s: &str| {
        s.parse::<Ipv4Net>()
            .ok()
            .or_else(|| s.parse::<Ipv4Addr>().ok().map(|a| Ipv4Net::new(a, 32).expect("/32")))
    };
    let mut out: Vec<Ipv4Net> = routes
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace().peekable();
            if words.peek().is_some_and(|w| TYPES.contains(w)) {
                words.next();
            }
            words.next().and_then(net)
        })
        .collect();
    out.extend(addrs.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == "inet")?;
        words.next().and_then(net).map(|n| n.trunc())
    }));
    out
}

/// A plain home-router DHCP server on `iface`: addresses from `range` and a router option,
/// nothing about booting PXE clients; bound to `iface` alone, logging every exchange to
/// stderr. The router is configured as docs/raspberry-pi.md asks of a site's DHCP server: U-Boot's
/// own DHCP is sent to `boot_server`, since U-Boot ignores proxy DHCP.
pub fn router_dnsmasq_args(
    iface: &str,
    range: (Ipv4Addr, Ipv4Addr),
    router: Ipv4Addr,
    boot_server: Ipv4Addr,
) -> Vec<String> {
    let mut args: Vec<String> = STANDALONE_DNSMASQ.iter().map(|a| a.to_string()).collect();
    args.extend([
        "-p0".into(),
        format!("--interface={iface}"),
        "--bind-interfaces".into(),
        format!("--dhcp-range={},{},255.255.255.0,1h", range.0, range.1),
        format!("--dhcp-option=option:router,{router}"),
        "--log-dhcp".into(),
    ]);
    args.extend(crate::render::uboot::site_dhcp_lines(boot_server));
    args
}

/// What a dnsmasq started by hand needs to run on its own: no config file, no pid or lease
/// file, no host files, in the foreground, logging to stderr.
pub const STANDALONE_DNSMASQ: [&str; 7] = [
    "--conf-file=/dev/null",
    "--pid-file=",
    "--leasefile-ro",
    "--no-hosts",
    "--no-resolv",
    "--keep-in-foreground",
    "--log-facility=-",
];

/// `ip link add <name> type bridge` without STP or forwarding delay: a port forwards at once,
/// before a firmware's first DHCP request.
pub fn bridge_args(name: &str) -> [&str; 9] {
    [
        "link",
        "add",
        name,
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
    ]
}

fn run(ip: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Failed(format!("running {} {}: {e}", ip.display(), args.join(" "))))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The network of one run. Field order matters only in [`Drop`], which does it by hand.
#[derive(Debug)]
pub struct Lab {
    pub names: Names,
    pub subnet: Ipv4Net,
    ip: PathBuf,
    /// What this run has created so far, so that a half-made lab is removed too.
    made_netns: bool,
    made_veth: bool,
    router: Option<Child>,
}

impl Lab {
    /// The host's routes and addresses, to choose a subnet that clashes with none.
    pub fn host_networks(ip: &Path) -> Result<Vec<Ipv4Net>, Error> {
        let routes = run(ip, &["-4", "-o", "route", "show", "table", "all"])?;
        let addrs = run(ip, &["-4", "-o", "addr", "show"])?;
        Ok(parse_taken(&routes, &addrs))
    }

    /// Creates the namespace, bridge, tap and veth; with `router_address`, the bridge gets the
    /// router's address (proxy mode). On any error what was made is removed (by drop).
    pub fn create(ip: &Path, names: Names, subnet: Ipv4Net, router_address: bool) -> Result<Lab, Error> {
        let mut lab = Lab {
            names,
            subnet,
            ip: ip.to_path_buf(),
            made_netns: false,
            made_veth: false,
            router: None,
        };
        let ns = lab.names.netns.clone();
        let veth = lab.names.veth.clone();
        if Path::new("/run/netns").join(&ns).exists() || Path::new("/sys/class/net").join(&veth).exists() {
            return Err(Error::Failed(format!(
                "the namespace {ns} or the link {veth} exists already (left by a killed run of this pid?)\n  fix: `ip netns del {ns}; ip link del {veth}`"
            )));
        }
        lab.ip(&["netns", "add", &ns])?;
        lab.made_netns = true;
        lab.ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        lab.ip(&[&["-n", ns.as_str()][..], &bridge_args(BRIDGE)].concat())?;
        lab.ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", HOST_PEER, "netns", &ns,
        ])?;
        lab.made_veth = true;
        lab.ip(&["-n", &ns, "link", "set", HOST_PEER, "master", BRIDGE])?;
        lab.ip(&["-n", &ns, "tuntap", "add", "dev", TAP, "mode", "tap"])?;
        lab.ip(&["-n", &ns, "link", "set", TAP, "master", BRIDGE])?;
        for dev in [HOST_PEER, TAP, BRIDGE] {
            lab.ip(&["-n", &ns, "link", "set", dev, "up"])?;
        }
        if router_address {
            let addr = format!("{}/24", lab.router_ip());
            lab.ip(&["-n", &ns, "addr", "add", &addr, "dev", BRIDGE])?;
        }
        let addr = format!("{}/24", lab.server_ip());
        lab.ip(&["addr", "add", &addr, "dev", &veth])?;
        lab.ip(&["link", "set", &veth, "up"])?;
        Ok(lab)
    }

    fn ip(&self, args: &[&str]) -> Result<String, Error> {
        run(&self.ip, args)
    }

    fn host(&self, n: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.subnet.network().octets();
        Ipv4Addr::new(a, b, c, n)
    }

    /// The boot server's address, on the host end of the veth.
    pub fn server_ip(&self) -> Ipv4Addr {
        self.host(SERVER_HOST)
    }

    /// The router of proxy mode, on the namespace's bridge.
    pub fn router_ip(&self) -> Ipv4Addr {
        self.host(ROUTER_HOST)
    }

    /// The addresses handed out (by the site in full mode, by the router in proxy mode).
    pub fn range(&self) -> (Ipv4Addr, Ipv4Addr) {
        (self.host(RANGE.0), self.host(RANGE.1))
    }

    /// Starts proxy mode's router: the real dnsmasq in the run's namespace, bound to its bridge,
    /// handing out addresses and nothing about booting. Its log goes to `log`.
    pub fn start_router(&mut self, dnsmasq: &Path, log: &Path) -> Result<(), Error> {
        let (start, end) = self.range();
        let file = File::create(log)?;
        let mut c = Command::new(&self.ip);
        c.args(["netns", "exec", &self.names.netns])
            .arg(dnsmasq)
            .args(router_dnsmasq_args(
                BRIDGE,
                (start, end),
                self.router_ip(),
                self.server_ip(),
            ))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = c
            .spawn()
            .map_err(|e| Error::Failed(format!("starting the router's dnsmasq: {e}")))?;
        self.router = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("started, version") {
                return Ok(());
            }
            let exited = self.router.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(Error::Failed(format!("the router's dnsmasq did not start:\n{text}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills everything running in the namespace, deletes the veth (both ends) and the
    /// namespace. Safe to call twice; errors are ignored, there is nothing left to do about them.
    pub fn teardown(&mut self) {
        if let Some(mut r) = self.router.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        if self.made_netns {
            if let Ok(pids) = self.ip(&["netns", "pids", &self.names.netns]) {
                for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                    // SAFETY: kill has no memory-safety preconditions; the pids are those
                    // the kernel lists as running in this run's own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        if self.made_veth {
            let _ = self.ip(&["link", "del", &self.names.veth]);
            self.made_veth = false;
        }
        if self.made_netns {
            // A process just killed may hold the namespace a moment longer.
            for _ in 0..20 {
                if self.ip(&["netns", "del", &self.names.netns]).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            self.made_netns = false;
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernels_limit() {
        let n = Names::for_pid(4_194_304);
        assert!(n.veth.len() <= 15, "{n:?}");
        assert_eq!(n.netns, "cozysmoke-4194304");
    }

    #[test]
    fn the_subnet_clashes_with_no_route_or_address_of_the_host() {
        let routes = "default via 192.168.1.1 dev eth0 proto dhcp\n\
                      10.247.5.0/24 dev docker9 proto kernel scope link src 10.247.5.1\n\
                      local 10.247.6.1 dev x table local proto kernel scope host src 10.247.6.1\n\
                      broadcast 127.255.255.255 dev lo table local\n";
        let addrs = "2: eth0    inet 192.168.1.20/24 brd 192.168.1.255 scope global eth0\n";
        let taken = parse_taken(routes, addrs);
        assert!(taken.contains(&"10.247.5.0/24".parse().unwrap()), "{taken:?}");
        assert!(taken.contains(&"10.247.6.1/32".parse().unwrap()), "{taken:?}");
        assert!(taken.contains(&"192.168.1.0/24".parse().unwrap()), "{taken:?}");
        assert_eq!(pick_subnet(&taken, 5), Some("10.247.7.0/24".parse().unwrap()));
        assert_eq!(pick_subnet(&taken, 300), Some("10.247.44.0/24".parse().unwrap()));
    }

    #[test]
    fn a_route_covering_a_whole_block_moves_on_to_the_next() {
        let taken = vec!["10.0.0.0/8".parse().unwrap(), "0.0.0.0/0".parse().unwrap()];
        assert_eq!(pick_subnet(&taken, 0), Some("172.30.0.0/24".parse().unwrap()));
    }
}
