//! matchbox: asked over HTTP exactly what iPXE will ask, and its answers followed to the
//! kernel and initramfs (by HEAD: their sizes are compared, never downloaded).

use super::{Check, Findings, Status};
use crate::artifacts::arch::Arch;
use crate::artifacts::matchbox_version::{self, Verdict};
use crate::engine::docker::{ContainerInfo, Engine};
use crate::host::reach::{self, Vantage};
use crate::journey::validate_marks::{MARK, SAMPLE_MAC};
use crate::settings::{NodeConfig, Settings};
use crate::store::state::State;
use crate::store::withdrawal::{self, Record};
use reqwest::{Client, StatusCode, Url};
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);
const SAMPLE_UUID: &str = "c0250b00-7000-4000-8000-000000000001";
const HEALTH: &str = "matchbox.health";
const BOOT_IPXE: &str = "matchbox.boot-ipxe";

/// What matchbox answered for `/ipxe`: the lines iPXE acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The URL the script was fetched from; relative kernel and initrd paths resolve against it.
    pub url: Url,
    pub kernel: String,
    pub args: Vec<String>,
    pub initrds: Vec<String>,
    /// The name each initrd is loaded as (`--name`, else the URL's file name), in order:
    /// what the kernel's `initrd=` must name.
    pub initrd_names: Vec<String>,
}

impl Script {
    pub fn parse(url: Url, text: &str) -> Option<Script> {
        if !text.trim_start().starts_with("#!ipxe") {
            return None;
        }
        let mut kernel = None;
        let mut initrds = Vec::new();
        let mut initrd_names = Vec::new();
        for line in text.lines().map(str::trim) {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("kernel") => kernel = Some(words.map(str::to_string).collect::<Vec<_>>()),
                Some("initrd") => {
                    // `initrd [--name NAME | -n NAME | --name=NAME] URL`: cozyboot's profiles
                    // name the initramfs because their URLs end in `?mac=...`.
                    let mut name = None;
                    while let Some(w) = words.next() {
                        if w == "--name" || w == "-n" {
                            name = words.next().map(str::to_string);
                        } else if let Some(n) = w.strip_prefix("--name=") {
                            name = Some(n.to_string());
                        } else {
                            initrd_names.push(name.take().unwrap_or_else(|| basename(w).to_string()));
                            initrds.push(w.to_string());
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
        let mut kernel = kernel?;
        if kernel.is_empty() {
            return None;
        }
        let path = kernel.remove(0);
        Some(Script {
            url,
            kernel: path,
            args: kernel,
            initrds,
            initrd_names,
        })
    }

    fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Every matchbox check, asked from where matchbox can really be reached (see [`reach`]):
/// from this host, or from inside the matchbox container's network namespace; when neither
/// is possible the health check says so and the rest are skipped.
pub async fn checks(s: &Settings, engine: &Engine) -> Vec<Check> {
    let vantage = match reach::vantage(s, engine, &s.names.matchbox).await {
        Ok(v) => v,
        Err(e) => {
            let health = Check::fail(HEALTH, "cannot tell where matchbox can be asked from").evidence(e.to_string());
            return skipping_the_rest(s, health, "matchbox could not be asked (see matchbox.health)");
        }
    };
    let health = match &vantage {
        Vantage::Nowhere { why, fix } => Some(
            Check::warn(
                HEALTH,
                format!("matchbox could not be asked over HTTP from here: {why}"),
            )
            .fix(fix.clone()),
        ),
        Vantage::Stopped { why } => Some(
            Check::fail(HEALTH, format!("matchbox cannot be asked: {why}"))
                .fix("run `cozyboot up`; see containers.matchbox.running"),
        ),
        _ => None,
    };
    if let Some(health) = health {
        return skipping_the_rest(s, health, "matchbox could not be asked from here (see matchbox.health)");
    }
    let settings = s.clone();
    let mut checks = match vantage.run(engine, move || async move { ask(&settings).await }).await {
        Ok(checks) => checks,
        Err(e) => {
            let health = Check::fail(
                HEALTH,
                "matchbox could not be asked from inside its container's network namespace",
            )
            .evidence(e)
            .fix(reach::NOWHERE_FIX);
            return skipping_the_rest(s, health, "matchbox could not be asked (see matchbox.health)");
        }
    };
    if let (Some(line), Some(health)) = (vantage.evidence(), checks.first_mut()) {
        health.evidence.insert(0, line);
    }
    checks
}

fn skipping_the_rest(s: &Settings, health: Check, why: &str) -> Vec<Check> {
    let skipped = later_ids(s).into_iter().map(|id| Check::skip(id, why));
    std::iter::once(health).chain(skipped).collect()
}

/// The checks themselves, from the calling thread's network namespace.
async fn ask(s: &Settings) -> Vec<Check> {
    let client = match Client::builder().timeout(TIMEOUT).no_proxy().build() {
        Ok(c) => c,
        Err(e) => return vec![Check::fail(HEALTH, format!("cannot make an HTTP client: {e}"))],
    };
    let health = health(&client, s).await;
    if health.status != Status::Pass {
        return skipping_the_rest(s, health, &format!("matchbox did not answer (see {HEALTH})"));
    }
    let mut checks = vec![health, boot_ipxe(&client, s).await];
    for &arch in &s.arches {
        let mut first = None;
        for buildarch in arch.ipxe_buildarches() {
            let (check, script) = ipxe(&client, s, buildarch).await;
            checks.push(check);
            first = first.or(script);
        }
        checks.push(files(&client, s, arch, first.as_ref()).await);
    }
    for n in &s.talos_nodes {
        checks.push(node(&client, s, n).await);
    }
    checks
}

/// Ids of every check after the health check, in order.
fn later_ids(s: &Settings) -> Vec<String> {
    let mut ids = vec![BOOT_IPXE.to_string()];
    for arch in &s.arches {
        ids.extend(arch.ipxe_buildarches().iter().map(|b| format!("matchbox.ipxe.{b}")));
        ids.push(format!("matchbox.files.{arch}"));
    }
    ids.extend(s.talos_nodes.iter().map(|n| format!("matchbox.node.{}", n.mac)));
    ids
}

/// `(status, body)` of a GET, or the transport error in words.
async fn get(client: &Client, url: &str) -> Result<(StatusCode, String), String> {
    reach::guard(&Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?)?;
    let response = client.get(url).send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| describe(&e))?;
    Ok((status, body))
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

async fn health(client: &Client, s: &Settings) -> Check {
    let url = format!("{}/", s.http_base());
    match get(client, &url).await {
        Ok((status, body)) if status.is_success() && body.trim() == "matchbox" => {
            Check::pass(HEALTH, format!("GET {url} answers `matchbox`")).evidence(format!("GET {url} → {status}"))
        }
        Ok((status, body)) => Check::fail(HEALTH, format!("GET {url} did not answer `matchbox`"))
            .evidence(format!("GET {url} → {status}: {:?}", snippet(&body)))
            .fix("something else answers on this address and port: check --server-ip and --http-port"),
        Err(e) => Check::fail(HEALTH, format!("matchbox does not answer on {url}"))
            .evidence(format!("GET {url}: {e}"))
            .fix("check that the matchbox container runs (containers.matchbox.running) and that this host can reach --server-ip"),
    }
}

async fn boot_ipxe(client: &Client, s: &Settings) -> Check {
    let url = format!("{}/boot.ipxe", s.http_base());
    let (status, body) = match get(client, &url).await {
        Ok(answer) => answer,
        Err(e) => return Check::fail(BOOT_IPXE, format!("GET {url} failed")).evidence(e),
    };
    let evidence = format!("GET {url} → {status}: {:?}", snippet(&body));
    if !status.is_success() || !body.contains("#!ipxe") {
        return Check::fail(BOOT_IPXE, "matchbox does not serve the iPXE boot script").evidence(evidence);
    }
    if !body.contains("arch=") {
        return Check::fail(
            BOOT_IPXE,
            "/boot.ipxe chains without `arch=` (matchbox older than v0.11.0): iPXE never reports its \
             architecture, so the groups that select on `arch` never match and every node gets \
             404 (\"No such file\")",
        )
        .evidence(evidence)
        .fix("run a matchbox image of v0.11.0 or later (the variant's matchbox image at a newer --tag)");
    }
    Check::pass(BOOT_IPXE, "/boot.ipxe chains to /ipxe with `arch=${buildarch}`").evidence(evidence)
}

fn ipxe_url(s: &Settings, buildarch: &str, mac: &str) -> String {
    format!(
        "{}/ipxe?uuid={SAMPLE_UUID}&mac={mac}&domain=&hostname=&serial=&arch={buildarch}&{MARK}",
        s.http_base()
    )
}

/// Fetches and parses the script an iPXE of `buildarch` with MAC `mac` gets.
async fn script(client: &Client, url: &str) -> Result<Script, String> {
    let (status, body) = get(client, url).await?;
    if status == StatusCode::NOT_FOUND {
        return Err(format!("GET {url} → 404: no group matches these labels"));
    }
    if !status.is_success() {
        return Err(format!("GET {url} → {status}: {:?}", snippet(&body)));
    }
    let parsed = Url::parse(url).ok().and_then(|u| Script::parse(u, &body));
    parsed.ok_or_else(|| {
        format!(
            "GET {url} → {status}, but not an iPXE script with a kernel line: {:?}",
            snippet(&body)
        )
    })
}

async fn ipxe(client: &Client, s: &Settings, buildarch: &str) -> (Check, Option<Script>) {
    let id = format!("matchbox.ipxe.{buildarch}");
    let url = ipxe_url(s, buildarch, SAMPLE_MAC);
    let script = match script(client, &url).await {
        Ok(script) => script,
        Err(e) => {
            let check = Check::fail(&id, format!("iPXE reporting arch={buildarch} gets no boot script"))
                .evidence(e)
                .fix("run `cozyboot up` to write the profiles and groups; see config.matchbox-files");
            return (check, None);
        }
    };
    let mut f = Findings::default();
    f.note(format!("GET {url} → 200"));
    f.note(format!("kernel {} {}", script.kernel, script.args.join(" ")));
    kernel_line(&script, &mut f);
    if let Some(config) = script.arg("talos.config") {
        talos_config(client, config, buildarch, SAMPLE_MAC, &mut f).await;
    }
    let ok = format!(
        "arch={buildarch} boots {} with talos.platform=metal and initrd=",
        script.kernel
    );
    (f.into_check(&id, ok), Some(script))
}

/// The kernel line Talos needs on metal, and `initrd=` naming a loaded initrd (UEFI).
fn kernel_line(script: &Script, f: &mut Findings) {
    if script.arg("talos.platform") != Some("metal") {
        f.fail("the kernel line lacks talos.platform=metal: Talos will not boot as a metal node");
    }
    let basenames: Vec<&str> = script.initrd_names.iter().map(String::as_str).collect();
    match script.arg("initrd") {
        None => f.fail("the kernel line lacks initrd=<name>: a UEFI kernel then finds no initramfs"),
        Some(name) if !basenames.contains(&name) => f.fail(format!(
            "initrd={name} names no loaded initrd (loaded: {})",
            basenames.join(", ")
        )),
        Some(_) => {}
    }
    if script.initrds.is_empty() {
        f.fail("the script loads no initrd");
    }
}

/// The `talos.config` URL with iPXE's variables filled in as a client of `buildarch` would.
fn expand(url: &str, buildarch: &str, mac: &str) -> String {
    let mut out = String::new();
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else { break };
        let var = &rest[start + 2..start + len];
        out.push_str(match var.split(':').next().unwrap_or_default() {
            "buildarch" => buildarch,
            "mac" => mac,
            "uuid" => SAMPLE_UUID,
            _ => "",
        });
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// Fetches the machine config the kernel line points at; returns its body when served.
async fn talos_config(client: &Client, url: &str, buildarch: &str, mac: &str, f: &mut Findings) -> Option<String> {
    let url = expand(url, buildarch, mac);
    let url = format!("{url}{}{MARK}", if url.contains('?') { '&' } else { '?' });
    match get(client, &url).await {
        Ok((status, body)) if status.is_success() => {
            f.note(format!("talos.config: GET {url} → {status}, {} bytes", body.len()));
            Some(body)
        }
        Ok((status, _)) => {
            f.fail(format!(
                "talos.config points at {url}, which answers {status}: nodes boot without their config"
            ));
            None
        }
        Err(e) => {
            f.fail(format!("talos.config points at {url}, which fails: {e}"));
            None
        }
    }
}

async fn files(client: &Client, s: &Settings, arch: Arch, script: Option<&Script>) -> Check {
    let id = format!("matchbox.files.{arch}");
    let Some(script) = script else {
        return Check::skip(&id, format!("no boot script for {arch} (see matchbox.ipxe.*)"));
    };
    let mut f = Findings::default();
    let buildarch = arch.ipxe_buildarches()[0];
    for path in std::iter::once(&script.kernel).chain(&script.initrds) {
        // The URLs carry `?mac=${mac:hexhyp}` as iPXE expands it; the sample MAC marks these
        // requests as validate's, so that `cozyboot nodes` does not count them as a machine.
        let path = expand(path, buildarch, SAMPLE_MAC);
        let Ok(url) = script.url.join(&path) else {
            f.fail(format!("{path} is not a valid URL"));
            continue;
        };
        served_like_disk(client, s, &url, &mut f).await;
    }
    f.into_check(
        &id,
        format!("the {arch} kernel and initramfs answer 200 with the sizes of the files on disk"),
    )
}

/// HEAD `url`; compares its length with the file on disk when matchbox serves it from assets.
async fn served_like_disk(client: &Client, s: &Settings, url: &Url, f: &mut Findings) {
    let served = match length(client, url).await {
        Ok(n) => n,
        Err(e) => return f.fail(format!("{url}: {e}")),
    };
    let Some(disk) = disk_path(s, url) else {
        return f.note(format!(
            "HEAD {url} → 200, {} bytes (not served from this data dir)",
            shown(served)
        ));
    };
    match std::fs::metadata(&disk) {
        Err(e) => f.fail(format!(
            "{url} answers 200 but {} is unreadable ({e}): matchbox serves another data dir?",
            disk.display()
        )),
        Ok(m) if Some(m.len()) != served => f.fail(format!(
            "{url} serves {} bytes but {} has {} bytes: matchbox serves another data dir?",
            shown(served),
            disk.display(),
            m.len()
        )),
        Ok(m) => f.note(format!("HEAD {url} → 200, {} bytes, as {}", m.len(), disk.display())),
    }
}

fn shown(n: Option<u64>) -> String {
    n.map_or_else(|| "an unknown number of".to_string(), |n| n.to_string())
}

/// The length a GET of `url` would return, learnt without downloading it: HEAD, or for
/// servers that refuse HEAD a one-byte ranged GET.
async fn length(client: &Client, url: &Url) -> Result<Option<u64>, String> {
    reach::guard(url)?;
    let head = client.head(url.clone()).send().await.map_err(|e| describe(&e))?;
    let header = |r: &reqwest::Response, name: reqwest::header::HeaderName| {
        r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    };
    if head.status().is_success() {
        return Ok(header(&head, reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()));
    }
    if !matches!(
        head.status(),
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
    ) {
        return Err(format!("HEAD → {}", head.status()));
    }
    let ranged = client
        .get(url.clone())
        .header(reqwest::header::RANGE, "bytes=0-0")
        .send()
        .await
        .map_err(|e| describe(&e))?;
    match ranged.status() {
        StatusCode::PARTIAL_CONTENT => Ok(header(&ranged, reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.rsplit_once('/').and_then(|(_, total)| total.parse().ok()))),
        status => Err(format!("GET (bytes=0-0) → {status}")),
    }
}

/// Where matchbox reads `url` from on this host, when it is one of its `/assets/` URLs.
fn disk_path(s: &Settings, url: &Url) -> Option<PathBuf> {
    let ours = url.host_str() == Some(&s.server_ip.to_string()) && url.port_or_known_default() == Some(s.http_port);
    let rest = url.path().strip_prefix("/assets/")?;
    (ours && !rest.split('/').any(|part| part == "..")).then(|| s.assets_dir().join(rest))
}

/// The file name of a path or URL, without its query.
fn basename(path: &str) -> &str {
    let path = path.split('?').next().unwrap_or(path);
    path.rsplit('/').next().unwrap_or(path)
}

async fn node(client: &Client, s: &Settings, node: &NodeConfig) -> Check {
    let id = format!("matchbox.node.{}", node.mac);
    let mac = node.mac.replace(':', "-");
    let mut f = Findings::default();
    // `cozyboot nodes` withdrew it once the machine took it: the node boots maintenance mode.
    let withdrawn = Record::load(&s.data_dir)
        .ok()
        .and_then(|r| r.find(&withdrawal::sha256(node.config.content.as_bytes())).cloned());
    for buildarch in node.arch.ipxe_buildarches() {
        let url = ipxe_url(s, buildarch, &mac);
        let script = match script(client, &url).await {
            Ok(script) => script,
            Err(e) => {
                f.fail(e);
                continue;
            }
        };
        if let Some(w) = &withdrawn {
            match script.arg("talos.config") {
                Some(url) => f.fail(format!(
                    "arch={buildarch} mac={mac} still points at {url}, but its config was withdrawn after {} took it",
                    w.mac
                )),
                None => f.note(format!(
                    "arch={buildarch} mac={mac}: no talos.config (withdrawn after {} took it)",
                    w.mac
                )),
            }
            continue;
        }
        let Some(config_url) = script.arg("talos.config") else {
            f.fail(format!(
                "arch={buildarch} mac={mac} boots without talos.config: the node's group did not win"
            ));
            continue;
        };
        if let Some(body) = talos_config(client, config_url, buildarch, &mac, &mut f).await {
            if body != node.config.content {
                f.fail(format!(
                    "arch={buildarch} mac={mac} is served another config than {}",
                    node.config.path.display()
                ));
            }
        }
    }
    let ok = match &withdrawn {
        Some(_) => format!(
            "{}'s own config ({}) was withdrawn once it took it; it boots maintenance mode now",
            node.mac,
            node.config.path.display()
        ),
        None => format!("{} gets its own config ({})", node.mac, node.config.path.display()),
    };
    f.into_check(&id, ok)
}

fn snippet(body: &str) -> String {
    let one_line = body.trim().replace('\n', "⏎");
    one_line.chars().take(160).collect()
}

const VERSION: &str = "matchbox.version";

/// The running matchbox's version: from what `up` recorded for the same image id, else
/// asked of the image (`-version`, in a short-lived container without a network).
pub async fn version(engine: &Engine, st: &State, running: Option<&ContainerInfo>) -> Check {
    let Some(c) = running else {
        return Check::skip(VERSION, "no matchbox container (see containers.matchbox)");
    };
    let (said, source) = match st.matchbox_version.as_ref().filter(|v| v.image_id == c.image_id) {
        Some(v) => (
            (0, v.version.clone()),
            format!("recorded by `cozyboot up` for image {}", c.image_id),
        ),
        None => match engine
            .run_once(&c.image_id, matchbox_version::VERSION_ARGS, Duration::from_secs(20))
            .await
        {
            Ok(said) => (said, format!("`{} -version` in a temporary container", c.image)),
            Err(e) => {
                return Check::warn(VERSION, "could not ask the matchbox image its version").evidence(e.to_string())
            }
        },
    };
    let evidence = format!("{}: {} ({source})", c.image, said.1.trim());
    match matchbox_version::judge(said.0, &said.1) {
        Verdict::Supported(v) => Check::pass(
            VERSION,
            format!("matchbox {v} sends the `arch` label the groups select on"),
        )
        .evidence(evidence),
        Verdict::TooOld(v) => {
            let message = matchbox_version::too_old(&c.image, v);
            let (finding, fix) = message.split_once("\n  fix: ").unwrap_or((&message, ""));
            Check::fail(VERSION, finding.to_string())
                .evidence(evidence)
                .fix(fix.to_string())
        }
        Verdict::Unknown(why) => Check::warn(
            VERSION,
            format!(
                "cannot tell the matchbox version; cozyboot needs {} or newer",
                matchbox_version::MINIMUM
            ),
        )
        .evidence(format!("{evidence}; {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "#!ipxe\nkernel /assets/talos/arm64/vmlinuz initrd=initramfs.xz talos.platform=metal talos.config=http://10.0.0.1:8080/generic?arch=${buildarch:uristring}&mac=${mac:hexhyp}\ninitrd /assets/talos/arm64/initramfs.xz\nboot\n";

    fn url() -> Url {
        Url::parse("http://10.0.0.1:8080/ipxe?arch=arm64").unwrap()
    }

    #[test]
    fn parses_matchbox_scripts() {
        let s = Script::parse(url(), SCRIPT).unwrap();
        assert_eq!(s.kernel, "/assets/talos/arm64/vmlinuz");
        assert_eq!(s.initrds, vec!["/assets/talos/arm64/initramfs.xz"]);
        assert_eq!(s.arg("initrd"), Some("initramfs.xz"));
        assert_eq!(
            s.url.join(&s.kernel).unwrap().as_str(),
            "http://10.0.0.1:8080/assets/talos/arm64/vmlinuz"
        );
        assert!(Script::parse(url(), "404 page not found").is_none());
        assert!(Script::parse(url(), "#!ipxe\nchain foo\n").is_none());
    }

    #[test]
    fn initrd_name_option_is_the_loaded_name() {
        let text = "#!ipxe\nkernel /assets/talos/arm64/vmlinuz?mac=${mac:hexhyp} initrd=initramfs.xz\ninitrd --name initramfs.xz /assets/talos/arm64/initramfs.xz?mac=${mac:hexhyp}\ninitrd /a/b.img?x=1\nboot\n";
        let s = Script::parse(Url::parse("http://10.0.0.1:8080/ipxe?arch=arm64").unwrap(), text).unwrap();
        assert_eq!(
            s.initrds,
            vec!["/assets/talos/arm64/initramfs.xz?mac=${mac:hexhyp}", "/a/b.img?x=1"]
        );
        assert_eq!(s.initrd_names, vec!["initramfs.xz", "b.img"]);
        assert_eq!(
            expand(&s.kernel, "arm64", SAMPLE_MAC),
            format!("/assets/talos/arm64/vmlinuz?mac={SAMPLE_MAC}")
        );
    }

    #[test]
    fn kernel_line_needs_metal_and_a_matching_initrd() {
        let mut f = Findings::default();
        kernel_line(&Script::parse(url(), SCRIPT).unwrap(), &mut f);
        assert_eq!(f.into_check("x", "ok").status, Status::Pass);

        let bad = SCRIPT
            .replace("talos.platform=metal ", "")
            .replace("initrd=initramfs.xz", "initrd=initrd.img");
        let mut f = Findings::default();
        kernel_line(&Script::parse(url(), &bad).unwrap(), &mut f);
        let c = f.into_check("x", "ok");
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.finding.contains("talos.platform=metal") && c.finding.contains("initrd=initrd.img"),
            "{}",
            c.finding
        );
    }

    #[test]
    fn expands_ipxe_variables_like_a_client() {
        assert_eq!(
            expand(
                "http://h/generic?arch=${buildarch:uristring}&mac=${mac:hexhyp}&x=${hostname}",
                "arm64",
                "02-00"
            ),
            "http://h/generic?arch=arm64&mac=02-00&x="
        );
        assert_eq!(expand("http://h/plain", "arm64", "m"), "http://h/plain");
    }
}
