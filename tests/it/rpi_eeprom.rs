//! The Raspberry Pi 4/CM4 bootloader EEPROM's network boot through the containers `up`
//! starts, with the real dnsmasq, in full and in proxy mode (one site per mode, see
//! support/validate_lab.rs: a veth into a namespace the test made, nothing else attached).
//!
//! The client is shaped like the EEPROM (support/rpi.rs cites the sources): client-arch 0,
//! vendor class `PXEClient:Arch:00000:UNDI:002001`, option 97 `RPi4`..., a Pi MAC. It must be
//! offered option 43 `Raspberry Pi Boot` (raspberrypi/documentation: the EEPROM boots only
//! from such a reply, `PXE_OPTION43`), never `undionly.kpxe`, and then read over TFTP what the
//! EEPROM and start4.elf read: `<serial>/start4.elf` first (TFTP_PREFIX=0, the default); for
//! a board with settings (full mode) it is there, and the board reads its own folder, with its
//! own `RPI_EFI.fd`; otherwise the root's (rpi-eeprom release notes 2019-11-18), then
//! `config.txt` and `RPI_EFI.fd`. An x86 BIOS PXE ROM with a non-Pi MAC still gets `undionly.kpxe`.
//! The firmware comes from a stand-in of the pftf/RPi4 release zip given as `--rpi-uefi PATH`
//! (full mode) and as an http URL on the namespace's loopback (proxy mode).

use crate::support;

use cozyboot::artifacts::rpi;
use cozyboot::artifacts::rpi_uefi_vars::{self as vars, BoardSettings};
use cozyboot::host::pxe_client::{self as probe, DiscoverSpec, Offer, ProbeError};
use std::fs;
use std::time::Duration;
use support::http::FileServer;
use support::rpi::{PI_MAC, PI_REVISION, PI_SERIAL};
use support::validate_lab::{Lab, Setup};

/// dnsmasq pings an address for 3 s before it first offers it (full mode).
const WAIT: Duration = Duration::from_secs(5);
/// An x86 PC's NIC (QEMU's block), not a Pi.
const PC_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x2c, 0x11, 0x07];

struct PiBoot {
    offers: Vec<Offer>,
    prefixed: Result<Vec<u8>, ProbeError>,
    /// The files the EEPROM and start4.elf read, as named in the release (from `<serial>/`
    /// when the board has its folder, from the root otherwise).
    files: Vec<(&'static str, Vec<u8>)>,
    bios: Option<String>,
}

/// The files read after `start4.elf`'s own look-up, in the order start4.elf reads them.
const PI_FILES: [&str; 4] = [rpi::START_FILE, rpi::CONFIG_TXT, rpi::UEFI_FD, rpi::CM4_DTB];

/// What the EEPROM does, then what an x86 BIOS ROM does, from the lab's namespace. Once
/// `<serial>/start4.elf` is there, the EEPROM reads every file from that folder (TFTP_PREFIX 0,
/// rpi-eeprom's network boot notes); otherwise it drops the prefix.
fn boot_like_a_pi_and_a_pc(lab: &Lab) -> PiBoot {
    let iface = lab.client_if.clone();
    lab.run_in(move || {
        let pi = DiscoverSpec::rpi_eeprom(PI_MAC, PI_REVISION, PI_SERIAL);
        let offers = probe::discover(&iface, &pi, WAIT).expect("the Pi EEPROM gets an answer");
        let server = offers
            .iter()
            .find(|o| o.offers_raspberry_pi_boot())
            .map(Offer::tftp_server)
            .unwrap_or_else(|| panic!("no option 43 Raspberry Pi Boot in {offers:#?}"));
        let prefix = rpi::serial_prefix(PI_SERIAL);
        let prefixed = probe::fetch(server, &format!("{prefix}start4.elf"), WAIT);
        let folder = if prefixed.is_ok() { prefix.as_str() } else { "" };
        let files = PI_FILES
            .into_iter()
            .map(|name| {
                let path = format!("{folder}{name}");
                (
                    name,
                    probe::fetch(server, &path, WAIT).unwrap_or_else(|e| panic!("{path}: {e}")),
                )
            })
            .collect();
        let bios = probe::boot_file_for(&iface, &DiscoverSpec::firmware(0, PC_MAC), WAIT)
            .expect("the BIOS ROM gets an answer")
            .boot_file;
        PiBoot {
            offers,
            prefixed,
            files,
            bios,
        }
    })
}

/// `own_fd`: the board's own `RPI_EFI.fd` when it has settings (then every file comes from its
/// folder); `None`: the release's files from the root.
fn assert_pi_boots(lab: &Lab, boot: &PiBoot, proxy: bool, own_fd: Option<&[u8]>) {
    let log = lab.dnsmasq_log();
    let answer = boot.offers.iter().find(|o| o.offers_raspberry_pi_boot()).unwrap();
    assert_eq!(answer.server_id.to_string(), lab.server_ip(), "{log}");
    assert_eq!(answer.proxy, proxy, "{answer:?}");
    // The menu dnsmasq sends: one local-boot item (type 0) named `Raspberry Pi Boot`.
    let menu = answer.pxe_menu();
    assert_eq!(menu.len(), 1, "{menu:?}");
    assert_eq!(menu[0].description, rpi::OPTION43_MATCH);
    assert!(
        boot.offers
            .iter()
            .all(|o| o.boot_file.as_deref() != Some("undionly.kpxe")),
        "a Pi must never be offered undionly.kpxe: {:#?}\n{log}",
        boot.offers
    );
    let prefix = rpi::serial_prefix(PI_SERIAL);
    match (&boot.prefixed, own_fd) {
        (Ok(bytes), Some(_)) => assert_eq!(bytes, &support::rpi::file(rpi::START_FILE)),
        (Err(ProbeError::TftpRefused { message, .. }), None) => assert!(message.contains("not found"), "{message}"),
        (other, _) => panic!(
            "<serial>/start4.elf: {other:?} (the board has its folder: {})",
            own_fd.is_some()
        ),
    }
    for (name, bytes) in &boot.files {
        let want = match own_fd {
            Some(fd) if *name == rpi::UEFI_FD => fd.to_vec(),
            _ => support::rpi::file(name),
        };
        assert!(bytes == &want, "{name} over TFTP is not what it should be\n{log}");
    }
    assert_eq!(
        boot.bios.as_deref(),
        Some("undionly.kpxe"),
        "an x86 BIOS ROM with a non-Pi MAC keeps undionly.kpxe\n{log}"
    );
    // dnsmasq's own account: the Pi was tagged and the firmware went out, from the board's
    // folder or, after `<serial>/start4.elf` was not found, from the root.
    assert!(log.contains("rpi-eeprom"), "{log}");
    let sent = |path: &str| log.contains(&format!("tftpboot/{path} to"));
    if own_fd.is_some() {
        assert!(sent(&format!("{prefix}{}", rpi::UEFI_FD)), "{log}");
    } else {
        assert!(log.contains("start4.elf not found") && sent("start4.elf"), "{log}");
    }
}

/// `validate --probe-dhcp` plays the Pi EEPROM and checks the installed firmware.
fn assert_validate_passes_the_pi_checks(lab: &Lab) {
    let out = lab.validate_probing(&[]);
    assert_eq!(out.code, 0, "{}", out.table());
    let pi = out.expect("probe.rpi-eeprom", "pass");
    assert!(pi.contains("Raspberry Pi Boot") && pi.contains("identical to"), "{pi}");
    let fw = out.expect("assets.rpi-firmware", "pass");
    assert!(fw.contains("as recorded") && fw.contains("armstub=RPI_EFI.fd"), "{fw}");
    assert!(out.expect("probe.arch-0", "pass").contains("undionly.kpxe"));
}

#[test]
fn full_mode_the_pi_eeprom_gets_option_43_and_its_boards_own_firmware_and_a_pc_keeps_undionly() {
    // The Pi has settings of its own (rpi-nodes in the config file, as users write them).
    let config = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        config.path(),
        format!(
            "rpi-nodes:\n  - serial: \"{PI_SERIAL:08x}\"\n    settings:\n      ram-above-3gb: true\n      system-table: devicetree\n"
        ),
    )
    .unwrap();
    let Some(lab) = Lab::new(Setup {
        arches: "arm64,amd64",
        rpi: true,
        extra: vec![format!("--config={}", config.path().display())],
        ..Setup::default()
    }) else {
        return;
    };
    lab.up();
    // As released, Readme.md aside: the TFTP root is the assets dir.
    assert_eq!(
        fs::read_to_string(lab.path("assets/config.txt")).unwrap(),
        support::rpi::CONFIG
    );
    assert!(lab.path("assets/overlays/upstream-pi4.dtbo").is_file());
    assert!(!lab.path("assets/Readme.md").exists());

    // The board asked for in rpi-nodes got its folder: the release with its settings in the FD.
    let own_fd = fs::read(lab.path(&format!("assets/{}{}", rpi::serial_prefix(PI_SERIAL), rpi::UEFI_FD))).unwrap();
    let mut settings = BoardSettings::default();
    settings.set("ram-above-3gb", "true").unwrap();
    settings.set("system-table", "devicetree").unwrap();
    let release_fd = support::rpi::file(rpi::UEFI_FD);
    assert_eq!(own_fd, vars::board_fd(&release_fd, &settings).unwrap());
    assert_ne!(own_fd, release_fd);

    let boot = boot_like_a_pi_and_a_pc(&lab);
    assert_pi_boots(&lab, &boot, false, Some(&own_fd));
    assert_validate_passes_the_pi_checks(&lab);
}

#[test]
fn proxy_mode_the_pi_eeprom_gets_option_43_and_its_firmware_downloaded_from_a_url() {
    let Some(mut lab) = Lab::new(Setup {
        proxy: true,
        arches: "arm64,amd64",
        ..Setup::default()
    }) else {
        return;
    };
    // The release served on the namespace's loopback, where `up` runs.
    let path = format!("/{}", support::rpi::ZIP_NAME);
    let server = lab.run_in(|| FileServer::serve(&path, support::rpi::stand_in_zip()));
    lab.setup.rpi_uefi = Some(server.url(&path));
    lab.up();
    assert_eq!(server.requests(), 1, "downloaded once");

    let boot = boot_like_a_pi_and_a_pc(&lab);
    assert_pi_boots(&lab, &boot, true, None);
    assert_validate_passes_the_pi_checks(&lab);

    // A second `up` finds the firmware in place: nothing is downloaded again.
    lab.up();
    assert_eq!(server.requests(), 1, "the installed firmware is kept");
    // Stopped where it listens: its accept is woken by a connection to its loopback address.
    lab.run_in(move || drop(server));
}

#[test]
fn a_zip_that_is_not_the_firmware_or_a_known_bad_release_is_refused_before_anything_changes() {
    if !support::images::require_docker() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases = [
        (
            "no-cm4.zip",
            support::rpi::zip_of(
                &support::rpi::files("v1.41")
                    .into_iter()
                    .filter(|(n, _)| n != rpi::CM4_DTB)
                    .collect::<Vec<_>>(),
            ),
            "bcm2711-rpi-cm4.dtb",
        ),
        (
            "RPi4_UEFI_Firmware_v1.51.zip",
            support::rpi::zip_of(&support::rpi::files("v1.51")),
            "00:00:00:00:00:00",
        ),
        ("not-a-zip.zip", b"PK but not really".to_vec(), "not a zip archive"),
    ];
    for (name, bytes, expect) in cases {
        let zip = dir.path().join(name);
        fs::write(&zip, bytes).unwrap();
        // A dry run: the release is read and refused while `up` gathers what it works from.
        let out = assert_cmd::Command::cargo_bin("cozyboot")
            .unwrap()
            .current_dir(dir.path())
            .env("COZYBOOT_SITES_DIR", dir.path().join("sites"))
            .args(["up", "--dry-run", "--iface=lo", "--server-ip=127.0.0.1", "--arch=arm64"])
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--rpi-uefi={}", zip.display()))
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains("rpi-uefi") && stderr.contains(expect) && stderr.contains("fix:"),
            "{name}: {stderr}"
        );
        assert!(!data.exists(), "{name}: nothing may be written");
    }
}
