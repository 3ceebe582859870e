//! A power-on storm: N simulated UEFI machines boot at once against a running site, each the
//! way a firmware and iPXE do it, until each has downloaded its kernel and initramfs.
//!
//! A helper of `bench/run --only storm` (docs/performance.md, "Power-on storm"), not a user
//! command. It runs inside a network namespace that `bench/run` made, on the namespace's end
//! of a veth whose other end the site's dnsmasq is bound to (nothing else is on that link):
//!
//! ```sh
//! ip netns exec NS target/release/examples/storm_bench --iface IF --clients 200
//! ```
//!
//! Each machine, with its own MAC:
//! 1. DHCP as the firmware (arch 11, `PXEClient:Arch:00011:UNDI:003000`): DISCOVER, OFFER,
//!    REQUEST, ACK, retransmitting after 4, 8, 16 and 32 s as EDK2 does;
//! 2. puts the leased address on the interface (as its own, for everything that follows);
//! 3. TFTP as EDK2: the size request it aborts, then the boot file; then, as iPXE does on
//!    start, `autoexec.ipxe` (absent: "not found" is the expected answer);
//! 4. DHCP again as iPXE (option 175, user class `iPXE`), which offers the `boot.ipxe` URL;
//! 5. HTTP as iPXE: `boot.ipxe`, the `chain`ed `/ipxe?...` with iPXE's settings expanded
//!    (`${mac:hexhyp}`, `${uuid}`, ...), then the profile's `kernel` and every `initrd`,
//!    read to the end. The machine is at the kernel stage when the last byte arrived.
//!
//! Prints one JSON document: per machine the time (from the common start) at which each stage
//! ended, or the stage that failed and why.

use anyhow::{anyhow, bail, Context, Result};
use cozyboot::host::pxe_client::{dhcp, tftp, DiscoverSpec, ProbeError};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// EDK2's DHCP retransmission waits (`mDhcp4DefaultTimeout` in tianocore/edk2
/// `NetworkPkg/Dhcp4Dxe/Dhcp4Impl.c`; RFC 2131 section 4.1's exponential back-off).
const DHCP_WAITS: [Duration; 4] = [
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
];
/// Per TFTP packet; the client sends again up to 5 times (`tftp::fetch`).
const TFTP_WAIT: Duration = Duration::from_secs(4);
const HTTP_CONNECT: Duration = Duration::from_secs(30);
/// ARM64 UEFI (option 93 = 11).
const ARCH: u16 = 11;
const BUILDARCH: &str = "arm64";

struct Args {
    iface: String,
    clients: usize,
    timeout: Duration,
    /// Third byte of every MAC, so that runs with other sets of machines do not reuse leases.
    mac_prefix: u8,
}

fn args() -> Result<Args> {
    let mut a = Args {
        iface: String::new(),
        clients: 50,
        timeout: Duration::from_secs(600),
        mac_prefix: 0x5b,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--iface" => a.iface = value()?,
            "--clients" => a.clients = value()?.parse().context("--clients")?,
            "--timeout" => a.timeout = Duration::from_secs(value()?.parse().context("--timeout")?),
            "--mac-prefix" => a.mac_prefix = u8::from_str_radix(&value()?, 16).context("--mac-prefix (hex)")?,
            _ => bail!(
                "unknown argument {flag}; usage: storm_bench --iface IF [--clients N] [--timeout S] [--mac-prefix HH]"
            ),
        }
    }
    if a.iface.is_empty() {
        bail!("--iface is required");
    }
    if !(1..=4096).contains(&a.clients) {
        bail!("--clients must be from 1 to 4096");
    }
    Ok(a)
}

/// What one machine reached, in seconds from the common start.
#[derive(Default)]
struct Run {
    mac: String,
    ip: Option<Ipv4Addr>,
    stages: Vec<(&'static str, f64)>,
    failed: Option<(&'static str, String)>,
    bytes: u64,
}

impl Run {
    fn json(&self) -> Value {
        let stages: serde_json::Map<String, Value> =
            self.stages.iter().map(|(k, t)| (k.to_string(), json!(t))).collect();
        json!({
            "mac": self.mac,
            "ip": self.ip.map(|ip| ip.to_string()),
            "stages": stages,
            "failed_stage": self.failed.as_ref().map(|f| f.0),
            "error": self.failed.as_ref().map(|f| f.1.clone()),
            "bytes": self.bytes,
        })
    }
}

fn mac_of(prefix: u8, i: usize) -> [u8; 6] {
    [0x52, 0x54, prefix, 0x00, (i >> 8) as u8, i as u8]
}

fn hex(mac: &[u8; 6], sep: &str) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(sep)
}

/// iPXE's settings as a machine of index `i` has them; unknown ones expand to nothing, as in
/// iPXE.
fn expand(script_line: &str, mac: &[u8; 6], i: usize) -> String {
    let mut out = String::new();
    let mut rest = script_line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let setting = &rest[start + 2..start + end];
        let (name, kind) = setting.split_once(':').unwrap_or((setting, ""));
        out.push_str(&match (name, kind) {
            ("mac", "hexhyp") => hex(mac, "-"),
            ("mac", _) => hex(mac, ":"),
            ("uuid", _) => format!("5b0a1e00-0000-4000-8000-{}", hex(mac, "")),
            ("serial", _) => format!("STORM{i:05}"),
            ("buildarch", _) => BUILDARCH.to_string(),
            _ => String::new(),
        });
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The URL argument of an iPXE `kernel`/`initrd`/`chain` line: the first word that is not an
/// option (`--name X`, `--name=X`, `-n X` take a value).
fn image_url(words: &[&str]) -> Option<String> {
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match *w {
            "--name" | "-n" | "--timeout" | "-t" => {
                it.next();
            }
            w if w.starts_with('-') => {}
            w => return Some(w.to_string()),
        }
    }
    None
}

async fn get_text(client: &reqwest::Client, url: &reqwest::Url) -> Result<String> {
    let r = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = r.status();
    let body = r.text().await.with_context(|| format!("GET {url}: body"))?;
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}: {}", body.trim());
    }
    Ok(body)
}

async fn download(client: &reqwest::Client, url: &reqwest::Url) -> Result<u64> {
    let mut r = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !r.status().is_success() {
        bail!("GET {url}: HTTP {}", r.status());
    }
    let expected = r.content_length();
    let mut got = 0u64;
    while let Some(chunk) = r
        .chunk()
        .await
        .with_context(|| format!("GET {url}: body after {got} bytes"))?
    {
        got += chunk.len() as u64;
    }
    if expected.is_some_and(|n| n != got) {
        bail!("GET {url}: {got} bytes, Content-Length said {}", expected.unwrap_or(0));
    }
    Ok(got)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ProbeError> + Send + 'static) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

async fn add_address(iface: &str, ip: Ipv4Addr) -> Result<()> {
    let out = tokio::process::Command::new("ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", iface])
        .output()
        .await
        .context("running ip")?;
    // A machine that leased the same address again (a rerun) already has it.
    if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("File exists") {
        bail!(
            "ip addr add {ip}/32 dev {iface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

async fn machine(i: usize, a: Arc<Args>, t0: Instant, run: &mut Run) -> Result<(), (&'static str, anyhow::Error)> {
    let mac = mac_of(a.mac_prefix, i);
    run.mac = hex(&mac, ":");
    let at = || t0.elapsed().as_secs_f64();
    let iface = a.iface.clone();

    let fw = DiscoverSpec::firmware(ARCH, mac);
    let ack = blocking(move || dhcp::lease(&iface, &fw, &DHCP_WAITS))
        .await
        .map_err(|e| ("dhcp", e))?;
    run.ip = Some(ack.yiaddr);
    run.stages.push(("dhcp", at()));
    let ip = ack.yiaddr;
    let boot_file = ack
        .boot_file
        .clone()
        .ok_or_else(|| ("dhcp", anyhow!("the ACK named no boot file")))?;
    add_address(&a.iface, ip).await.map_err(|e| ("address", e))?;

    let server = ack.tftp_server();
    let (f1, f2) = (boot_file.clone(), boot_file.clone());
    let size = blocking(move || tftp::size_as(ip, server, &f1, TFTP_WAIT))
        .await
        .map_err(|e| ("tftp", e))?;
    let efi = blocking(move || tftp::fetch_as(ip, server, &f2, TFTP_WAIT))
        .await
        .map_err(|e| ("tftp", e))?;
    if size.is_some_and(|s| s != efi.len()) || !efi.starts_with(b"MZ") {
        return Err((
            "tftp",
            anyhow!("{boot_file}: {} bytes, tsize {size:?}, not a PE file", efi.len()),
        ));
    }
    run.bytes += efi.len() as u64;
    match blocking(move || tftp::fetch_as(ip, server, "autoexec.ipxe", TFTP_WAIT)).await {
        Ok(_) => {}
        Err(e) if matches!(e.downcast_ref::<ProbeError>(), Some(ProbeError::TftpRefused { .. })) => {}
        Err(e) => return Err(("tftp", e.context("autoexec.ipxe"))),
    }
    run.stages.push(("tftp", at()));

    let iface = a.iface.clone();
    let ipxe = DiscoverSpec::ipxe(ARCH, mac);
    let ack = blocking(move || dhcp::lease(&iface, &ipxe, &DHCP_WAITS))
        .await
        .map_err(|e| ("ipxe-dhcp", e))?;
    let script_url = ack
        .boot_file
        .filter(|f| f.starts_with("http://"))
        .ok_or_else(|| ("ipxe-dhcp", anyhow!("iPXE was offered no http:// script")))?;
    run.stages.push(("ipxe-dhcp", at()));

    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(ip))
        .no_proxy()
        .connect_timeout(HTTP_CONNECT)
        .user_agent("iPXE/1.21.1+ (storm_bench)")
        .build()
        .map_err(|e| ("http", e.into()))?;
    let base = reqwest::Url::parse(&script_url).map_err(|e| ("http", e.into()))?;
    let boot = get_text(&client, &base).await.map_err(|e| ("script", e))?;
    let chain = boot
        .lines()
        .find_map(|l| l.strip_prefix("chain "))
        .ok_or_else(|| ("script", anyhow!("{base} has no chain line: {boot}")))?;
    let words: Vec<&str> = chain.split_whitespace().collect();
    let target = image_url(&words).ok_or_else(|| ("script", anyhow!("chain without a URL")))?;
    let profile_url = base.join(&expand(&target, &mac, i)).map_err(|e| ("script", e.into()))?;
    let profile = get_text(&client, &profile_url).await.map_err(|e| ("profile", e))?;
    run.stages.push(("profile", at()));

    let mut images = Vec::new();
    for line in profile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [cmd @ ("kernel" | "initrd"), rest @ ..] = words.as_slice() {
            let url = image_url(rest).ok_or_else(|| ("profile", anyhow!("{cmd} without a URL")))?;
            images.push((
                *cmd,
                profile_url
                    .join(&expand(&url, &mac, i))
                    .map_err(|e| ("profile", e.into()))?,
            ));
        }
    }
    if !images.iter().any(|(c, _)| *c == "kernel") {
        return Err(("profile", anyhow!("no kernel line in {profile_url}: {profile}")));
    }
    for (cmd, url) in &images {
        run.bytes += download(&client, url)
            .await
            .map_err(|e| (if *cmd == "kernel" { "kernel" } else { "initrd" }, e))?;
    }
    run.stages.push(("kernel", at()));
    Ok(())
}

fn main() -> Result<()> {
    let a = Arc::new(args()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(a.clients.max(16) * 2)
        .build()?;
    let started = std::time::SystemTime::now();
    let runs = rt.block_on(async {
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..a.clients)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(async move {
                    let mut run = Run::default();
                    match tokio::time::timeout(a.timeout, machine(i, a.clone(), t0, &mut run)).await {
                        Ok(Ok(())) => {}
                        Ok(Err((stage, e))) => run.failed = Some((stage, format!("{e:#}"))),
                        Err(_) => {
                            let stage = next_stage(&run);
                            run.failed = Some((stage, format!("not done after {} s", a.timeout.as_secs())));
                        }
                    }
                    run
                })
            })
            .collect();
        let mut runs = Vec::new();
        for t in tasks {
            runs.push(t.await.expect("a machine's task panicked"));
        }
        runs
    });
    let machines: Vec<Value> = runs.iter().map(Run::json).collect();
    let out = json!({
        "clients": a.clients,
        "iface": a.iface,
        "started": started.duration_since(std::time::UNIX_EPOCH)?.as_secs_f64(),
        "machines": machines,
    });
    println!("{}", serde_json::to_string(&out)?);
    // The summary for a person; bench/run reads the JSON.
    let mut kernel: Vec<f64> = runs
        .iter()
        .filter(|r| r.failed.is_none())
        .filter_map(|r| r.stages.last().map(|s| s.1))
        .collect();
    kernel.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        kernel
            .get(((kernel.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
    };
    eprintln!(
        "storm_bench: {}/{} reached the kernel stage; p50 {:?} s, p99 {:?} s",
        kernel.len(),
        a.clients,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

/// The stage a machine was in when it ran out of time.
fn next_stage(run: &Run) -> &'static str {
    match run.stages.last().map(|s| s.0) {
        None => "dhcp",
        Some("dhcp") => "tftp",
        Some("tftp") => "ipxe-dhcp",
        Some("ipxe-dhcp") => "profile",
        _ => "kernel",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipxe_settings_expand_as_matchbox_boot_script_needs() {
        let mac = [0x52, 0x54, 0x5b, 0, 0, 7];
        let line = "ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}";
        assert_eq!(
            expand(line, &mac, 7),
            "ipxe?uuid=5b0a1e00-0000-4000-8000-52545b000007&mac=52-54-5b-00-00-07&domain=&hostname=&serial=STORM00007&arch=arm64"
        );
    }

    #[test]
    fn image_url_skips_options_and_their_values() {
        let words = ["--name", "initramfs.xz", "/assets/i?mac=x"];
        assert_eq!(image_url(&words).as_deref(), Some("/assets/i?mac=x"));
        assert_eq!(image_url(&["/k", "console=tty0"]).as_deref(), Some("/k"));
    }
}
