//! Real firmware boots through the path users run: `cozyboot up` on the host network, its
//! containers (the dnsmasq image's entrypoint, bind mounts, matchbox as a container), and a
//! Talos-style image that holds only UKIs (`/usr/install/<arch>/vmlinuz.efi`, built with
//! ukify by `scripts/firmware-artifacts`), which `up` finds, splits and serves.
//!
//! The network (see `support::firmware::Lab::on_host`): a veth this test creates, its host
//! end carrying the server address, its peer a port of a bridge in a private namespace where
//! QEMU's tap is; in proxy mode a plain router DHCP sits on that bridge too. Before `up`
//! starts anything, each test asserts that the rendered dnsmasq binds only that veth
//! (`--interface=<veth>` and `--bind-interfaces`): no DHCP server of a test ever answers on
//! a real interface. After the boot, `validate --probe-dhcp` acts as a PXE client from the
//! host end of the veth on the same site.
//!
//! Needs root, Docker, the local test registry and the firmware artifacts; in CI a missing
//! one fails the test.

use crate::support;

use assert_cmd::Command as Bin;
use cozyboot::render;
use cozyboot::settings::{net::FixedNet, Purpose};
use serde_json::Value;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};
use support::docker::docker;
use support::firmware::{
    one_boot_at_a_time, Artifacts, Client, Lab, Mode, Outcome, Servers, Smbios, Stage, BOOT_TIMEOUT, LISTENING,
    LISTEN_ARG,
};
use support::images;

/// The containers `up` started, read through `docker logs` (what a user would read).
struct Containers<'a> {
    dnsmasq: &'a str,
    matchbox: &'a str,
    router: Option<&'a support::firmware::Router>,
}

impl Servers for Containers<'_> {
    fn dnsmasq_log(&self) -> String {
        docker(&["logs", self.dnsmasq]).1
    }
    fn matchbox_log(&self) -> String {
        docker(&["logs", self.matchbox]).1
    }
    fn router_log(&self) -> String {
        self.router.map(|r| r.log()).unwrap_or_default()
    }
}

/// Everything this test made in the engine: containers and image tags; removed on drop.
struct Made {
    containers: Vec<String>,
    tags: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in &self.containers {
            for suffix in ["", "-cozyboot-new", "-cozyboot-old"] {
                docker(&["rm", "-f", &format!("{c}{suffix}")]);
            }
        }
        for t in &self.tags {
            docker(&["rmi", t]);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// The CLI as a user runs it, with the list of sites kept in the test's own folder.
fn cozyboot(work: &Path, args: &[String]) -> (i32, Value, String) {
    let out = cozyboot_output(work, args);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cozyboot_output(work: &Path, args: &[String]) -> std::process::Output {
    Bin::cargo_bin("cozyboot")
        .unwrap()
        .env("COZYBOOT_SITES_DIR", work.join("sites"))
        .args(args)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap()
}

/// What `cozyboot` reported about one boot through `up`.
struct Reports {
    /// `validate --json --probe-dhcp` after the boot.
    validation: Value,
    /// `nodes --json --no-probe` after the VM powered off: what the logs alone tell.
    nodes: Value,
    /// `nodes --json` (probing TCP 50000) while /init listened, in full mode, then `nodes`
    /// (the table).
    nodes_while_listening: Option<(Value, String)>,
    /// With a `--log-level`: what `logs matchbox` shows after the boot, then what
    /// `logs matchbox --log-level info` shows.
    matchbox_logs: Option<(String, String)>,
    /// `--json export bootbox --force` after `nodes` wrote the journal.
    bootbox: Value,
}

/// Boots `client` through the site `cozyboot up` starts on the host network, then probes it
/// with `validate --probe-dhcp`. In full mode the node stands in for Talos's maintenance mode
/// ([`LISTEN_ARG`]) and `cozyboot nodes` probes it while it listens. With `log_level`, the site
/// is brought up at that `--log-level`. `None` when it cannot run here (it said why).
fn boot(client: Client, mode: Mode, log_level: Option<&str>, smbios: Option<&Smbios>) -> Option<(Outcome, Reports)> {
    let artifacts = Artifacts::find()?;
    if !images::require_docker() {
        return None;
    }
    images::ensure().unwrap();
    let _one_at_a_time = one_boot_at_a_time();
    let (mut lab, host_if) = Lab::on_host(mode)?;
    lab.smbios = smbios.cloned();
    let work = tempfile::tempdir().unwrap();
    let net = &lab.net;
    let id = format!("fw{}-{}", std::process::id(), net.subnet);
    let prefix = images::registry_prefix();
    let talos = format!("{prefix}/talos/cozystack-spin-only/talos:{id}");
    let matchbox_image = format!("{prefix}/talos/cozystack-spin-only/matchbox:{id}");
    let (matchbox, dnsmasq) = (format!("cbfw-m-{id}"), format!("cbfw-d-{id}"));
    let _made = Made {
        containers: vec![matchbox.clone(), dnsmasq.clone()],
        tags: vec![talos.clone(), matchbox_image.clone()],
    };
    support::firmware::uki_image(&artifacts, &talos, work.path());
    let stock = format!("{prefix}/talos/cozystack-spin-only/matchbox:v1.0.0");
    for args in [vec!["pull", "-q", stock.as_str()], vec!["tag", &stock, &matchbox_image]] {
        let (ok, out) = docker(&args);
        assert!(ok, "docker {args:?}: {out}");
    }

    let data = work.path().join("data");
    let port = free_port();
    let mut settings = images::registry_flags().to_vec();
    settings.extend([
        format!("--iface={host_if}"),
        format!("--server-ip={}", net.server_ip()),
        format!("--subnet={}/24", net.ip(0)),
        "--arch=arm64,amd64".to_string(),
        format!("--http-port={port}"),
        format!("--data-dir={}", data.display()),
        format!("--tag={id}"),
        format!("--ipxe-arm64={}", artifacts.path("ipxe/ipxe-arm64.efi").display()),
        // The Pi EEPROM's netboot has its own tests (rpi_eeprom.rs): these boot QEMU, not a Pi.
        "--rpi-netboot=off".to_string(),
        format!("--matchbox-name={matchbox}"),
        format!("--dnsmasq-name={dnsmasq}"),
    ]);
    // Only in full mode does dnsmasq see the lease the booted system takes (in proxy mode the
    // router hands it out), so only there can `nodes` know where to knock.
    let listen = mode == Mode::Full;
    if listen {
        settings.push(format!("--dhcp-range={},{}", net.ip(100), net.ip(150)));
        settings.push(format!("--kernel-args={LISTEN_ARG}"));
    }
    settings.extend(log_level.map(|l| format!("--log-level={l}")));

    // The safety rule, checked before anything starts: dnsmasq binds the test's veth only.
    let mut render_args = vec!["render".to_string(), "--json".into()];
    render_args.extend(settings.iter().cloned());
    let (code, rendered_json, stderr) = cozyboot(work.path(), &render_args);
    assert_eq!(code, 0, "render: {stderr}");
    let argv: Vec<String> = serde_json::from_value(rendered_json["dnsmasq"]["args"].clone())
        .unwrap_or_else(|_| panic!("render --json has dnsmasq.args: {rendered_json:#}"));
    let interfaces: Vec<&String> = argv.iter().filter(|a| a.starts_with("--interface")).collect();
    assert_eq!(interfaces, [&format!("--interface={host_if}")], "{argv:?}");
    assert!(argv.iter().any(|a| a == "--bind-interfaces"), "{argv:?}");
    assert!(!argv.iter().any(|a| a.starts_with("--except-interface")), "{argv:?}");

    let t0 = Instant::now();
    let mut up_args = vec!["up".to_string(), "--json".into()];
    up_args.extend(settings.iter().cloned());
    let (code, report, stderr) = cozyboot(work.path(), &up_args);
    assert_eq!(code, 0, "up failed: {stderr}\n{report:#}");
    let (_, cmd) = docker(&[
        "inspect",
        "-f",
        "{{json .Config.Cmd}} {{.HostConfig.NetworkMode}}",
        &dnsmasq,
    ]);
    assert!(
        cmd.contains(&format!("--interface={host_if}")) && cmd.contains("--bind-interfaces") && cmd.contains(" host"),
        "the running dnsmasq: {cmd}"
    );
    // What `nodes` and `validate` read is logged at info, whatever the setting.
    let (_, cmd) = docker(&["inspect", "-f", "{{json .Config.Cmd}}", &matchbox]);
    assert!(cmd.contains("\"-log-level=info\""), "the running matchbox: {cmd}");
    let router = lab.router();
    let setup = t0.elapsed();

    // The same settings as the CLI resolved, for the watch (bootloader names, profiles).
    let s = support::settings::valid(&settings, &FixedNet::default(), Purpose::Render);
    let rendered = render::render(&s);
    let servers = Containers {
        dnsmasq: &dnsmasq,
        matchbox: &matchbox,
        router: router.as_ref(),
    };
    let data_flag = format!("--data-dir={}", data.display());
    let nodes_args = |probe: bool| -> Vec<String> {
        let mut a: Vec<String> = vec!["nodes".into(), "--json".into(), data_flag.clone()];
        if !probe {
            a.push("--no-probe".into());
        }
        a
    };
    // While QEMU runs under the watch below: once /init says it listens, ask `cozyboot nodes`
    // (which knocks on TCP 50000 of every machine that fetched its initramfs).
    let outcome;
    let nodes_while_listening;
    {
        let serial = work.path().join("serial.log");
        let (work_path, args) = (work.path(), nodes_args(true));
        (outcome, nodes_while_listening) = std::thread::scope(|scope| {
            let prober = listen.then(|| {
                scope.spawn(move || {
                    let deadline = Instant::now() + BOOT_TIMEOUT;
                    while Instant::now() < deadline {
                        if fs::read(&serial).is_ok_and(|b| String::from_utf8_lossy(&b).contains(LISTENING)) {
                            let (code, nodes, stderr) = cozyboot(work_path, &args);
                            assert_eq!(code, 0, "nodes while listening: {stderr}\n{nodes:#}");
                            // /init answers a second knock: the table a user reads.
                            let table: Vec<String> = args.iter().filter(|a| *a != "--json").cloned().collect();
                            let out = cozyboot_output(work_path, &table);
                            let table = String::from_utf8_lossy(&out.stdout).into_owned();
                            assert!(
                                out.status.success(),
                                "nodes (table): {table}{}",
                                String::from_utf8_lossy(&out.stderr)
                            );
                            return Some((nodes, table));
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    None
                })
            });
            let outcome = lab.watch(&artifacts, &s, &rendered, client, &servers, work.path(), None, setup);
            (outcome, prober.and_then(|p| p.join().expect("the prober")))
        });
    }
    let name = std::thread::current().name().unwrap_or("boot").replace("::", "-");
    let logs = outcome.save(&name);
    println!("{}\n  full logs: {}", outcome.timeline(), logs.display());
    if let Some((_, table)) = &nodes_while_listening {
        fs::write(logs.join("nodes.txt"), table).unwrap();
        println!("cozyboot nodes, while the node listened:\n{table}");
    }

    let mut validate_args = vec!["validate".to_string(), "--json".into(), "--probe-dhcp".into()];
    validate_args.extend(settings.iter().cloned());
    let (_, validation, _) = cozyboot(work.path(), &validate_args);
    // What `cozyboot nodes` makes of the running containers' logs (read through the engine).
    // No TCP probe: the VM is powered off, and the test asserts only what the logs tell.
    let (code, nodes, stderr) = cozyboot(work.path(), &nodes_args(false));
    assert_eq!(code, 0, "nodes: {stderr}\n{nodes:#}");
    // BootBox's values from the journal `nodes` just wrote; --force keeps arm64 machines in.
    // In proxy mode the router's gateway and lease time are not cozyboot's: any will do here.
    let mut export_args: Vec<String> = vec![
        "--json".into(),
        "export".into(),
        "bootbox".into(),
        "--force".into(),
        data_flag.clone(),
    ];
    if mode == Mode::Proxy {
        export_args.extend(["--gateway=10.0.0.1".into(), "--lease-time=3600".into()]);
    }
    let (code, bootbox, stderr) = cozyboot(work.path(), &export_args);
    assert_eq!(code, 0, "export bootbox: {stderr}\n{bootbox:#}");
    let matchbox_logs = log_level.map(|_| {
        let logs = |level: Option<&str>| {
            let mut args = vec![
                "logs".to_string(),
                "matchbox".into(),
                "--json".into(),
                data_flag.clone(),
            ];
            args.extend(level.map(|l| format!("--log-level={l}")));
            let (code, logs, stderr) = cozyboot(work.path(), &args);
            assert_eq!(code, 0, "logs {args:?}: {stderr}");
            logs["matchbox"].as_str().unwrap_or_default().to_string()
        };
        (logs(None), logs(Some("info")))
    });
    Some((
        outcome,
        Reports {
            validation,
            nodes,
            nodes_while_listening,
            matchbox_logs,
            bootbox,
        },
    ))
}

fn assert_booted_through_up(o: &Outcome, validation: &Value) {
    assert_eq!(o.failed_at, None, "the boot broke:\n{}", o.report());
    let marker = format!("{} arch={}", support::firmware::MARKER, o.client.uname_m());
    assert!(o.evidence.serial.contains(&marker), "no `{marker}`:\n{}", o.report());
    let cmdline = o.cmdline.as_deref().unwrap_or_default();
    let serial = match o.client {
        Client::Arm64Uefi | Client::Arm64UBoot => "console=ttyAMA0,115200",
        Client::X64Uefi | Client::X86Bios => "console=ttyS0",
    };
    let consoles: Vec<&str> = cmdline
        .split_whitespace()
        .filter(|a| a.starts_with("console="))
        .collect();
    assert_eq!(consoles.last(), Some(&serial), "`{cmdline}`:\n{}", o.report());
    assert!(
        cmdline.contains("talos.platform=metal") && !cmdline.contains("cozyboot.embedded=1"),
        "the kernel got cozyboot's arguments, not the UKI's embedded ones: `{cmdline}`"
    );
    assert!(o.reached.iter().any(|(s, _)| *s == Stage::Initrd), "{}", o.report());
    // The probe, from the host end of the veth, against the same running site.
    let checks = validation["checks"].as_array().cloned().unwrap_or_default();
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| format!("{} {} {}", c["id"], c["finding"], c["evidence"]))
        .collect();
    assert!(
        failing.is_empty(),
        "validate --probe-dhcp failed:\n{}",
        failing.join("\n")
    );
    let probed: Vec<&Value> = checks
        .iter()
        .filter(|c| c["id"].as_str().is_some_and(|i| i.starts_with("probe.arch-")))
        .collect();
    assert!(
        probed.len() >= 3 && probed.iter().all(|c| c["status"] == "pass"),
        "{validation:#}"
    );
    assert_eq!(validation["ok"], true, "{validation:#}");
}

fn boots(client: Client, mode: Mode) {
    boots_at(client, mode, None);
}

fn boots_at(client: Client, mode: Mode, log_level: Option<&str>) {
    boots_with(client, mode, log_level, None);
}

fn boots_with(client: Client, mode: Mode, log_level: Option<&str>, smbios: Option<&Smbios>) {
    let Some((outcome, reports)) = boot(client, mode, log_level, smbios) else {
        return;
    };
    if let Some(smbios) = smbios {
        assert_nodes_kept_the_hardware(&outcome, &reports.nodes, smbios);
    }
    assert_booted_through_up(&outcome, &reports.validation);
    assert_nodes_saw_the_boot(&outcome, &reports.nodes);
    assert_bootbox_holds_the_machine(&outcome, &reports.bootbox);
    if mode == Mode::Full {
        assert_nodes_saw_talos_answer(&outcome, reports.nodes_while_listening.as_ref());
    }
    if let Some((shown, everything)) = &reports.matchbox_logs {
        assert_logs_show_the_level(&outcome, shown, everything);
    }
}

/// At `--log-level warn`, `cozyboot logs matchbox` shows no info line, and with
/// `--log-level info` every request of the boot: the setting filters what is shown, not what
/// matchbox logs.
fn assert_logs_show_the_level(o: &Outcome, shown: &str, everything: &str) {
    let mac = o.client.mac().replace(':', "-");
    assert!(
        everything.contains("level=info msg=\"HTTP GET /boot.ipxe")
            && everything
                .lines()
                .any(|l| l.contains("level=info msg=\"HTTP GET /assets/") && l.contains(&mac)),
        "`logs matchbox --log-level info` shows the boot's requests:\n{everything}"
    );
    let below: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("level=info") || l.contains("level=debug"))
        .collect();
    assert!(below.is_empty(), "`logs matchbox` at warn shows: {below:#?}");
    assert!(
        shown.lines().all(|l| everything.contains(l)),
        "`logs matchbox` shows lines matchbox did not write:\n{shown}"
    );
}

/// While the node listened (standing in for Talos's maintenance mode), `cozyboot nodes` found
/// it on the address it leased from cozyboot's dnsmasq after the kernel ran (a DHCP client
/// with no PXE class, as Talos's own: the same boot, not a new attempt), reported every stage
/// through `talos`, and printed the next step.
fn assert_nodes_saw_talos_answer(o: &Outcome, nodes: Option<&(Value, String)>) {
    assert!(
        o.reached.iter().any(|(s, _)| *s == Stage::Answered),
        "/init never had a connection:\n{}",
        o.report()
    );
    let (nodes, table) = nodes.unwrap_or_else(|| panic!("/init never said it listened:\n{}", o.report()));
    let m = nodes["machines"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["mac"] == o.client.mac()))
        .unwrap_or_else(|| panic!("no {} in {nodes:#}", o.client.mac()));
    let listening = o.listening_ip().expect("/init printed its address");
    assert_eq!(m["ip"], serde_json::json!(listening), "{m:#}");
    assert_eq!(stage_names(m), stages_through(o, "talos"), "{m:#}");
    assert_eq!(m["diagnosis"]["stopped_before"], Value::Null, "{m:#}");
    let fix = m["diagnosis"]["fix"].as_str().unwrap_or_default();
    let next = format!("talosctl apply-config --insecure -n {listening}");
    assert!(fix.contains(&next), "{m:#}");
    let row = table
        .lines()
        .skip_while(|l| !l.starts_with(o.client.mac()))
        .take(12)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(row.contains(&next), "the table shows the next step:\n{table}");
}

/// The stages of one machine of `nodes --json`, by name.
fn stage_names(m: &Value) -> Vec<&str> {
    let stages = m["stages"].as_array().map(Vec::as_slice).unwrap_or_default();
    stages.iter().filter_map(|s| s["stage"].as_str()).collect()
}

/// Every stage this client walks, from `dhcp` through `last` (a BIOS client fetches nothing
/// over TFTP: its NIC ROM is iPXE already; U-Boot runs a boot script, not iPXE).
fn stages_through(o: &Outcome, last: &str) -> Vec<&'static str> {
    let all = ["dhcp", "tftp", "boot-ipxe", "profile", "kernel", "initramfs", "talos"];
    let end = all.iter().position(|s| *s == last).expect("a stage name");
    let (tftp, ipxe) = (o.client.bootloader().is_some() || o.client.uboot(), !o.client.uboot());
    all[..=end]
        .iter()
        .copied()
        .filter(|s| match *s {
            "tftp" => tftp,
            "boot-ipxe" | "profile" => ipxe,
            _ => true,
        })
        .collect()
}

/// `cozyboot nodes --json`, reading the containers `up` started, reports this VM as the
/// harness saw it boot: its architecture, the address it leased, every stage through the
/// initramfs, with times; validate's own probes are not machines.
fn assert_nodes_saw_the_boot(o: &Outcome, nodes: &Value) {
    assert_eq!(nodes["schema"], "cozyboot.nodes/v1", "{nodes:#}");
    let machines = nodes["machines"].as_array().cloned().unwrap_or_default();
    assert!(
        machines
            .iter()
            .all(|m| !m["mac"].as_str().unwrap_or_default().starts_with("02:63:6f:7a:79:")),
        "validate's probes are counted as machines: {nodes:#}"
    );
    let m = machines
        .iter()
        .find(|m| m["mac"] == o.client.mac())
        .unwrap_or_else(|| panic!("no {} in {nodes:#}", o.client.mac()));
    let j = o.journey().expect("the harness's logs hold the VM");
    assert_eq!(m["arch"]["client_arch"], serde_json::json!(j.client_arch), "{m:#}");
    assert_eq!(m["arch"]["ipxe"], serde_json::json!(j.ipxe_arch), "{m:#}");
    assert_eq!(m["ip"], serde_json::json!(o.leased_ip()), "{m:#}");
    assert_eq!(stage_names(m), stages_through(o, "initramfs"), "{m:#}");
    assert!(
        m["stages"].as_array().unwrap().iter().all(|s| s["at"].is_string()),
        "docker's times: {m:#}"
    );
    assert_eq!(m["diagnosis"]["stopped_before"], "talos", "{m:#}");
}

/// `export bootbox --force` holds the VM with BootBox's keys only: its MAC, arch, firmware
/// kind and the address it leased.
fn assert_bootbox_holds_the_machine(o: &Outcome, bootbox: &Value) {
    if o.client.uboot() {
        assert_bootbox_left_out_u_boot(o, bootbox);
    } else {
        assert_bootbox_holds_the_uefi_or_bios_machine(o, bootbox);
    }
}

/// BootBox has only iPXE to offer, which does not run under U-Boot: left out, with why.
fn assert_bootbox_left_out_u_boot(o: &Outcome, bootbox: &Value) {
    let left_out = bootbox["left_out"].as_array().cloned().unwrap_or_default();
    assert!(
        left_out
            .iter()
            .any(|l| l["mac"] == o.client.mac() && l["reason"].as_str().unwrap_or_default().contains("U-Boot")),
        "{bootbox:#}"
    );
}

fn assert_bootbox_holds_the_uefi_or_bios_machine(o: &Outcome, bootbox: &Value) {
    let machines = bootbox["values"]["machines"].as_array().cloned().unwrap_or_default();
    let m = machines
        .iter()
        .find(|m| m["mac"][0] == o.client.mac())
        .unwrap_or_else(|| panic!("no {} in {bootbox:#}", o.client.mac()));
    let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    let bootbox_keys = [
        "arch",
        "hostname",
        "ip",
        "leaseTime",
        "mac",
        "nameServers",
        "timeServers",
        "uefi",
    ];
    assert!(keys.iter().all(|k| bootbox_keys.contains(k)), "{m:#}");
    let (arch, uefi) = match o.client {
        Client::Arm64Uefi => ("aarch64", true),
        Client::X64Uefi => ("x86_64", true),
        Client::X86Bios => ("x86_64", false),
        Client::Arm64UBoot => unreachable!("U-Boot boards are left out of BootBox"),
    };
    assert_eq!(
        (m["arch"].as_str(), m["uefi"].as_bool()),
        (Some(arch), Some(uefi)),
        "{m:#}"
    );
    assert_eq!(
        m["ip"]["address"],
        serde_json::json!(o.leased_ip().map(|ip| ip.to_string())),
        "{m:#}"
    );
}

/// `nodes --json` shows the SMBIOS uuid and serial iPXE sent to matchbox's `/ipxe`.
fn assert_nodes_kept_the_hardware(o: &Outcome, nodes: &Value, smbios: &Smbios) {
    let m = nodes["machines"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["mac"] == o.client.mac()))
        .unwrap_or_else(|| panic!("no {} in {nodes:#}", o.client.mac()));
    assert_eq!(m["hardware"]["uuid"], smbios.uuid, "{m:#}");
    assert_eq!(m["hardware"]["serial"], smbios.serial, "{m:#}");
}

/// With the VM's SMBIOS uuid and serial set, as a real machine has them.
#[test]
fn up_on_the_host_network_boots_arm64_uefi_with_full_dhcp() {
    let smbios = Smbios {
        uuid: "4c4c4544-0042-3510-8052-b4c04f395a32",
        serial: "CZB-SN-0042",
    };
    boots_with(Client::Arm64Uefi, Mode::Full, None, Some(&smbios));
}

/// At `--log-level warn` (which once set matchbox's own level, and left `nodes` without the
/// machine's stages after `boot.ipxe`).
#[test]
fn up_on_the_host_network_boots_arm64_uefi_with_proxy_dhcp_at_log_level_warn() {
    boots_at(Client::Arm64Uefi, Mode::Proxy, Some("warn"));
}

#[test]
fn up_on_the_host_network_boots_x64_uefi_with_full_dhcp() {
    boots(Client::X64Uefi, Mode::Full);
}

#[test]
fn up_on_the_host_network_boots_bios_with_full_dhcp() {
    boots(Client::X86Bios, Mode::Full);
}

/// A board running U-Boot's own network boot (Debian's u-boot-qemu, the same DHCP, TFTP and
/// script code as its Raspberry Pi builds) boots Talos's kernel and initramfs through the
/// containers `up` starts, with the arm64 profile's arguments, and `nodes` follows it by its
/// TFTP reads.
#[test]
fn up_on_the_host_network_boots_u_boot_with_full_dhcp() {
    boots(Client::Arm64UBoot, Mode::Full);
}

/// Beside a router: U-Boot ignores proxy DHCP, so the router names cozyboot's server for
/// U-Boot as docs/raspberry-pi.md asks of a site's DHCP server (`render::uboot::site_dhcp_lines`);
/// `nodes` still knows the board, from the MAC the script announces over TFTP.
#[test]
fn up_on_the_host_network_boots_u_boot_with_proxy_dhcp() {
    boots(Client::Arm64UBoot, Mode::Proxy);
}
