//! `cozyboot power` end to end, one test per driver, each against something that really
//! receives what is sent: a UDP listener in a network namespace the test made (wol), a
//! command that writes its argv to a file (command), Debian's `ipmi_sim` behind real
//! `ipmitool` (ipmi). Plus what must be refused, exit 2, before anything is sent.

use crate::support::{self, guard, journey_log, netns::TestNet};
use assert_cmd::Command as Bin;
use cozyboot::journey::event::Source;
use cozyboot::journey::powered::PowerOns;
use serde_json::Value;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A MAC of the captured arm64 boot, whose `/ipxe` request carries the serial below (the
/// serial is written into the captured log, as iPXE sends `${serial}` there: matchbox's
/// `GET /ipxe?uuid=…&mac=…&serial=…` line, see tests/fixtures/journey/README.md).
const SEEN_MAC: &str = "52:54:00:c0:0b:11";
const SERIAL: &str = "CZB-SN-0042";

/// A data dir whose journal knows `SEEN_MAC` with its serial, and a config declaring `machines`.
fn site(machines: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::save_journal(
        dir.path(),
        &[(
            Source::Matchbox,
            journey_log("arm64-full-mac-urls.matchbox.log").replace(
                "mac=52-54-00-c0-0b-11&domain=&hostname=&serial=&",
                &format!("mac=52-54-00-c0-0b-11&domain=&hostname=&serial={SERIAL}&"),
            ),
        )],
    );
    config(dir.path(), "lo", machines);
    dir
}

fn config(dir: &Path, iface: &str, machines: &str) {
    std::fs::write(
        dir.join("cozyboot.yaml"),
        format!("iface: {iface}\ndata-dir: {}\nmachines:\n{machines}", dir.display()),
    )
    .unwrap();
}

/// `cozyboot --config <dir>/cozyboot.yaml power ARGS` with no recorded site of this host in the way.
fn power(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let sites = tempfile::tempdir().unwrap();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .env("COZYBOOT_SITES_DIR", sites.path())
        .envs(env.iter().copied())
        .current_dir(dir)
        .arg("--config")
        .arg(dir.join("cozyboot.yaml"))
        .arg("power")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn command_driver_runs_its_template_with_mac_hostname_and_serial_filled() {
    let out_dir = tempfile::tempdir().unwrap();
    let argv_file = out_dir.path().join("argv");
    let dir = site(&format!(
        "- hostname: node1\n  mac: 52-54-00-C0-0B-11\n  power:\n    driver: command\n    on: sh -c 'printf \"%s\\n\" \"$@\" > {}' plug {{mac}} {{hostname}} '{{serial}} x'\n    off: 'false'\n",
        argv_file.display()
    ));
    let (code, out, err) = power(dir.path(), &["on", "node1"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(&argv_file).unwrap(),
        format!("{SEEN_MAC}\nnode1\n{SERIAL} x\n"),
        "the command got its placeholders filled, one argv word each, without a shell splitting them"
    );
    assert!(out.contains(&format!("node1 ({SEEN_MAC}): ran sh -c")), "{out}");
    // The power-on is recorded for `nodes` to time the boot from.
    let at = PowerOns::load(dir.path()).unwrap().at;
    assert!(at.contains_key(SEEN_MAC), "{at:?}");

    // A failing command is a failure of the command (exit 1), with what it said.
    let (code, out, err) = power(dir.path(), &["off", SEEN_MAC, "--json"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["schema"], "cozyboot.power/v1");
    assert_eq!(doc["machines"][0]["ok"], false);
    assert!(
        doc["machines"][0]["error"].as_str().unwrap().contains("false failed"),
        "{doc}"
    );
}

#[test]
fn mistakes_are_refused_before_anything_is_sent() {
    let out_dir = tempfile::tempdir().unwrap();
    let touched = out_dir.path().join("touched");
    let on = format!("touch {}", touched.display());
    let dir = site(&format!(
        "- {{hostname: node1, mac: '{SEEN_MAC}', power: {{driver: command, on: '{on}', off: '{on}'}}}}\n\
         - {{hostname: node2, mac: '52:54:00:aa:00:02', power: {{driver: command, on: 'plug --serial {{serial}} on', off: '{on}'}}}}\n\
         - {{hostname: node3, mac: '52:54:00:aa:00:03'}}\n\
         - {{hostname: node4, mac: '52:54:00:aa:00:04', power: {{driver: wol}}}}\n"
    ));
    for (args, expect) in [
        (&["on", "node1", "node9"][..], "machine = 'node9'"),
        (
            &["on", "node1", "node2"][..],
            "node2: the command uses {serial}, but 52:54:00:aa:00:02 was never seen",
        ),
        (&["on", "node1", "node3"][..], "node3 has no power driver"),
        (
            &["off", "node1", "node4"][..],
            "node4: Wake-on-LAN can only power a machine on",
        ),
        (&["status", "node1"][..], "no `status:` command"),
    ] {
        let (code, out, err) = power(dir.path(), args, &[]);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(expect) && err.contains("fix:"), "{args:?}: {err}");
        assert!(
            !touched.exists(),
            "{args:?}: node1's command ran though another machine was refused"
        );
    }
    // A dry run says what it would run, and runs nothing.
    let (code, out, err) = power(dir.path(), &["cycle", "node1", "--dry-run"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        format!(
            "node1 ({SEEN_MAC}): would run touch {0}\nnode1 ({SEEN_MAC}): would run touch {0}",
            touched.display()
        )
    );
    assert!(!touched.exists());
}

#[test]
fn wol_sends_the_magic_packet_out_of_the_sites_interface_to_a_listener_in_a_test_namespace() {
    let Some(net) = TestNet::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &net.server_if,
        "- {hostname: node1, mac: '52:54:00:aa:bb:01', arch: amd64, power: {driver: wol}}\n",
    );
    // The listener is the machine's side of the veth: it hears the broadcast on port 9.
    let listener = net.run_in_client(|| {
        let s = UdpSocket::bind("0.0.0.0:9").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    });
    let sites = tempfile::tempdir().unwrap();
    let out = net
        .server_command(assert_cmd::cargo::cargo_bin("cozyboot").to_str().unwrap())
        .env("COZYBOOT_SITES_DIR", sites.path())
        .arg("--config")
        .arg(dir.path().join("cozyboot.yaml"))
        .args(["power", "on", "node1"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("sent a 102-byte magic packet to udp 255.255.255.255:9 out of cb-srv"),
        "{text}"
    );
    let mut buf = [0u8; 512];
    let (len, from) = listener
        .recv_from(&mut buf)
        .expect("the magic packet arrives within 5 s");
    assert_eq!(
        from.ip(),
        std::net::IpAddr::V4(net.server_ip()),
        "sent from the site's interface"
    );
    // AMD's Magic Packet: six 0xFF, then the MAC sixteen times; nothing more.
    let mut expected = vec![0xFF; 6];
    for _ in 0..16 {
        expected.extend([0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01]);
    }
    assert_eq!(&buf[..len], &expected[..]);
    assert!(PowerOns::load(dir.path()).unwrap().at.contains_key("52:54:00:aa:bb:01"));
}

/// Debian's `ipmi_sim` (package openipmi) as the BMC, on loopback, its chassis power kept by
/// a `chassis_control` program (ipmi_lan(5); it is asked `get power` / `set power N` and
/// answers `power:N`) in a file the test reads too.
struct Bmc {
    child: Child,
    port: u16,
    power_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Bmc {
    fn start() -> Option<Bmc> {
        for tool in ["/usr/bin/ipmi_sim", "/usr/bin/ipmitool"] {
            if !Path::new(tool).exists() {
                return guard::skip(
                    None,
                    &format!("{tool} is missing (scripts/install-test-deps installs openipmi and ipmitool)"),
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let power_file = dir.path().join("power");
        let control = dir.path().join("chassis");
        std::fs::write(
            &control,
            format!(
                "#!/bin/sh\ncase \"$2\" in\n  get) echo \"power:$(cat {p} 2>/dev/null || echo 0)\";;\n  set) [ \"$3\" = power ] && echo \"$4\" > {p};;\nesac\n",
                p = power_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&control, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        // Unlikely to clash with another test process: derived from our pid, above 20000.
        let port = 20000 + (std::process::id() % 20000) as u16;
        // Shaped on OpenIPMI's own lanserv/lan.conf and lanserv/ipmisim1.emu (cminyard/openipmi).
        std::fs::write(
            dir.path().join("lan.conf"),
            format!(
                "name \"cozyboot\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n    priv_limit admin\n    allowed_auths_admin none md2 md5 straight\n    guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{} 0x20\"\n  user 2 true \"admin\" \"s3cret\" admin 10 none md2 md5 straight\n",
                control.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bmc.emu"),
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nmc_enable 0x20\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let child = Command::new("/usr/bin/ipmi_sim")
            .arg("-c")
            .arg(dir.path().join("lan.conf"))
            .arg("-f")
            .arg(dir.path().join("bmc.emu"))
            .arg("-s")
            .arg(dir.path().join("state"))
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Up when it answers on its UDP port: ipmitool asks at most 20 times, 0.25 s apart.
        let bmc = Bmc {
            child,
            port,
            power_file,
            _dir: dir,
        };
        for _ in 0..20 {
            let ok = Command::new("ipmitool")
                .args([
                    "-I",
                    "lanplus",
                    "-C",
                    "3",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "admin",
                    "-P",
                    "s3cret",
                ])
                .args(["-N", "1", "-R", "1", "chassis", "power", "status"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return Some(bmc);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("ipmi_sim did not answer on 127.0.0.1:{port} within 5 s");
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ipmi_driver_switches_the_simulated_chassis_through_real_ipmitool() {
    let Some(bmc) = Bmc::start() else { return };
    let dir = site(&format!(
        "- {{hostname: srv1, mac: '52:54:00:aa:00:09', arch: amd64, power: {{driver: ipmi, host: '127.0.0.1:{}', user: admin, password-env: CZB_BMC_PASSWORD, cipher-suite: 3}}}}\n",
        bmc.port
    ));
    // cipher-suite 3 (RAKP-HMAC-SHA1): ipmi_sim does not answer Get Channel Cipher Suites,
    // and ipmitool 1.8.19 without -C waits 10 s for that answer on every call.
    let env = [("CZB_BMC_PASSWORD", "s3cret")];
    let state = || {
        std::fs::read_to_string(&bmc.power_file)
            .unwrap_or_default()
            .trim()
            .to_string()
    };

    // Without the password variable: refused before ipmitool runs.
    let (code, _, err) = power(dir.path(), &["on", "srv1"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CZB_BMC_PASSWORD is not set"), "{err}");

    let (code, out, err) = power(dir.path(), &["on", "srv1"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Chassis Power Control: Up/On"), "{out}");
    assert_eq!(state(), "1", "the BMC switched the chassis on");
    let (code, out, err) = power(dir.path(), &["status", "srv1", "--json"], &env);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["machines"][0]["steps"][0]["output"], "Chassis Power is on", "{doc}");
    let (code, out, err) = power(dir.path(), &["off", "srv1"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(state(), "0", "the BMC switched the chassis off");
    // The password went through the environment: argv, as printed, never holds it.
    assert!(!out.contains("s3cret") && out.contains("-E chassis power off"), "{out}");
}
