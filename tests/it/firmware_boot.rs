//! Real firmware boots through cozyboot's configuration (issue 6, docs/firmware-tests.md).
//!
//! For each client -- ARM64 UEFI (AAVMF, option 93 = 11), x86_64 UEFI (OVMF, 7) and x86 BIOS
//! (SeaBIOS running QEMU's iPXE ROM, `${buildarch}` = i386) -- and each DHCP mode (full; proxy
//! beside a plain DHCP server playing the home router), cozyboot's settings are resolved and
//! rendered for a private network of namespaces, the real dnsmasq runs the rendered argv, the
//! matchbox double serves the rendered tree and assets, and QEMU boots Debian's kernel with a
//! tiny initramfs whose /init prints a marker and /proc/cmdline to /dev/console. The boots
//! use cozyboot's default kernel arguments, so the marker reaches the serial log only because
//! cozyboot's serial `console=` is the last one (it becomes /dev/console).
//!
//! The UKI tests serve what a Talos >= 1.10 installer holds, a UKI only (`vmlinuz.efi`, built
//! by `scripts/firmware-artifacts` with trixie's ukify and an embedded command line that is
//! not cozyboot's): split by `cozyboot::artifacts::uki::split` into the kernel + initramfs pair every
//! firmware boots, or (UEFI only) served whole.
//!
//! The mutation tests break one thing cozyboot gets right and check that the boot then fails
//! at the stage that thing is for.
//!
//! Needs root, `ip netns`, and what `scripts/firmware-artifacts` provides; without them each
//! test prints `skipped: ...` (in CI, or with COZYBOOT_REQUIRE_FIRMWARE=1, it fails instead).

use crate::support;

use cozyboot::artifacts::arch::Bootloader;
use cozyboot::render::{self, Rendered};
use cozyboot::settings::{net::FixedNet, Purpose, Settings};
use support::firmware::{
    one_boot_at_a_time, Artifacts, Client, Lab, Mode, Outcome, Stage, TalosSource, UKI, UKI_EMBEDDED_CMDLINE,
};
use support::netns::TestNet;

/// cozyboot's settings for the lab's network, resolved from flags exactly as `cozyboot
/// render` resolves them: the server's interface and address, both architectures, and in
/// full mode a DHCP range (proxy mode is the default).
fn settings_for(net: &TestNet, mode: Mode) -> Settings {
    let mut argv = vec![
        format!("--iface={}", net.server_if),
        format!("--server-ip={}", net.server_ip()),
        format!("--subnet={}/24", net.ip(0)),
        "--arch=arm64,amd64".into(),
    ];
    if mode == Mode::Full {
        argv.push(format!("--dhcp-range={},{}", net.ip(100), net.ip(150)));
    }
    support::settings::valid(&argv, &FixedNet::default(), Purpose::Render)
}

/// Boots `client` in `mode` through cozyboot's rendered configuration, changed by `mutate`.
/// `None` when the test cannot run here (it printed why).
fn boot(client: Client, mode: Mode, mutate: impl FnOnce(&mut Rendered)) -> Option<Outcome> {
    boot_with(|a| a, client, mode, mutate)
}

/// [`boot`] with other artifacts (e.g. another bootloader).
fn boot_with(
    artifacts: impl FnOnce(Artifacts) -> Artifacts,
    client: Client,
    mode: Mode,
    mutate: impl FnOnce(&mut Rendered),
) -> Option<Outcome> {
    let artifacts = artifacts(Artifacts::find()?);
    let _one_at_a_time = one_boot_at_a_time();
    let lab = Lab::new(mode)?;
    let s = settings_for(&lab.net, mode);
    let mut rendered = render::render(&s);
    mutate(&mut rendered);
    // To see which tests a broken configuration fails: COZYBOOT_FIRMWARE_MUTATE=<name>.
    if let Ok(name) = std::env::var("COZYBOOT_FIRMWARE_MUTATE") {
        println!("COZYBOOT_FIRMWARE_MUTATE={name}: applying that mutation to this boot");
        mutation(&name)(&mut rendered);
    }
    let outcome = lab.boot(&artifacts, &s, &rendered, client);
    // The test harness names each test's thread after the test.
    let name = std::thread::current().name().unwrap_or("boot").replace("::", "-");
    let logs = outcome.save(&name);
    println!("{}\n  full logs: {}", outcome.timeline(), logs.display());
    Some(outcome)
}

/// The serial console cozyboot must put on this client's kernel line (written here, not read
/// from cozyboot's arch table, so that a wrong table fails).
fn serial_console(client: Client) -> &'static str {
    match client {
        Client::Arm64Uefi | Client::Arm64UBoot => "console=ttyAMA0,115200",
        Client::X64Uefi | Client::X86Bios => "console=ttyS0",
    }
}

/// The client reached Linux and ran our /init (the marker, with the client's architecture,
/// is on the serial console: /init writes it to /dev/console only), and the kernel command
/// line holds the Talos arguments cozyboot rendered, with the serial console as the last
/// `console=`.
fn assert_booted(o: &Outcome) {
    assert_eq!(o.failed_at, None, "the boot broke:\n{}", o.report());
    o.assert_journey();
    let marker = format!("{} arch={}", support::firmware::MARKER, o.client.uname_m());
    assert!(
        o.evidence.serial.contains(&marker),
        "no `{marker}` on the console:\n{}",
        o.report()
    );
    let cmdline = o
        .cmdline
        .as_deref()
        .unwrap_or_else(|| panic!("/init printed no command line:\n{}", o.report()));
    let args: Vec<&str> = cmdline.split_whitespace().collect();
    let serial = serial_console(o.client);
    let want = [
        "talos.platform=metal",
        "initrd=initramfs.xz",
        "slab_nomerge",
        "pti=on",
        serial,
    ];
    for w in want {
        assert!(
            args.contains(&w),
            "`{w}` missing from the kernel command line `{cmdline}`:\n{}",
            o.report()
        );
    }
    let last_console = args.iter().rev().find(|a| a.starts_with("console="));
    assert_eq!(
        last_console,
        Some(&serial),
        "the last console= of `{cmdline}` (it becomes /dev/console) is not the serial one:\n{}",
        o.report()
    );
}

fn boots(client: Client, mode: Mode) {
    if let Some(o) = boot(client, mode, |_| {}) {
        assert_booted(&o);
    }
}

/// [`assert_booted`], and the command line is cozyboot's, not the one embedded in the UKI.
fn assert_booted_with_cozyboots_cmdline(o: &Outcome) {
    assert_booted(o);
    let cmdline = o.cmdline.as_deref().unwrap_or_default();
    assert!(
        !cmdline.contains("cozyboot.embedded=1"),
        "the kernel got the UKI's embedded command line `{cmdline}`:\n{}",
        o.report()
    );
}

#[test]
fn arm64_uefi_boots_linux_with_full_dhcp() {
    boots(Client::Arm64Uefi, Mode::Full);
}

#[test]
fn arm64_uefi_boots_linux_with_proxy_dhcp() {
    boots(Client::Arm64Uefi, Mode::Proxy);
}

#[test]
fn x64_uefi_boots_linux_with_full_dhcp() {
    boots(Client::X64Uefi, Mode::Full);
}

#[test]
fn bios_ipxe_boots_linux_with_full_dhcp() {
    boots(Client::X86Bios, Mode::Full);
}

// x64 UEFI and BIOS in proxy mode boot through the product's own containers instead, with
// the same rendered configuration: `smoke::x64_uefi_with_proxy_dhcp_beside_a_router_boots`
// and `smoke::bios_with_proxy_dhcp_beside_a_router_boots` (CI's time went to U-Boot's boots).

// ------------------------------------------------------------------------------ UKI only

/// A Talos >= 1.10 installer holds only the UKI: the pair `cozyboot::artifacts::uki::split` takes out of
/// it, served as `talos/<arch>/{vmlinuz,initramfs.xz}`, boots `client` with cozyboot's
/// command line (the UKI's embedded one, `console=tty0 cozyboot.embedded=1`, is not used: the
/// `.cmdline` section is left behind with the stub).
fn boots_the_uki_split(client: Client, mode: Mode) {
    let Some(o) = boot_with(|a| a.with_talos(TalosSource::UkiSplit), client, mode, |_| {}) else {
        return;
    };
    let parts = o.split.as_ref().expect("the boot split the UKI");
    assert_eq!(
        parts.layout.cmdline.as_deref(),
        Some(UKI_EMBEDDED_CMDLINE),
        "the test UKI embeds another command line"
    );
    println!(
        "uki::split: kernel {} B, initramfs {} B, embedded cmdline {:?}",
        parts.kernel.size, parts.initrd.size, parts.layout.cmdline
    );
    assert_booted_with_cozyboots_cmdline(&o);
}

#[test]
fn uki_only_arm64_uefi_boots_the_split_pair_with_full_dhcp() {
    boots_the_uki_split(Client::Arm64Uefi, Mode::Full);
}

#[test]
fn uki_only_arm64_uefi_boots_the_split_pair_with_proxy_dhcp() {
    boots_the_uki_split(Client::Arm64Uefi, Mode::Proxy);
}

#[test]
fn uki_only_x64_uefi_boots_the_split_pair_with_full_dhcp() {
    boots_the_uki_split(Client::X64Uefi, Mode::Full);
}

#[test]
fn uki_only_bios_ipxe_boots_the_split_pair_with_full_dhcp() {
    boots_the_uki_split(Client::X86Bios, Mode::Full);
}

/// The alternative cozyboot did not take, documented: a UEFI iPXE boots the UKI whole (profile
/// kernel `vmlinuz.efi`, no initrd); systemd-stub hands the kernel its `.initrd`, and with
/// Secure Boot off the arguments iPXE passes replace the embedded command line. BIOS clients
/// cannot do this, which is why cozyboot serves the split pair.
#[test]
fn uki_whole_boots_arm64_uefi_with_cozyboots_args() {
    let client = Client::Arm64Uefi;
    let serve_uki = |r: &mut Rendered| {
        let dir = format!("/talos/{}/", client.arch().asset_dir());
        for p in r.tree.profiles.iter_mut().filter(|p| p.boot.kernel.contains(&dir)) {
            p.boot.kernel = p.boot.kernel.replace(cozyboot::artifacts::layout::KERNEL, UKI);
            p.boot.initrd.clear();
        }
    };
    let Some(o) = boot_with(|a| a.with_talos(TalosSource::Uki), client, Mode::Full, serve_uki) else {
        return;
    };
    assert!(
        o.evidence.matchbox.contains(&format!("GET /assets/talos/arm64/{UKI}")),
        "iPXE did not fetch the UKI:\n{}",
        o.report()
    );
    assert_booted_with_cozyboots_cmdline(&o);
}

// ------------------------------------------------------------------------------ mutations

/// Things cozyboot gets right, each broken the way a hand-written configuration breaks it.
fn mutation(name: &str) -> fn(&mut Rendered) {
    match name {
        // The manual guide's rule: ARM64 as client-arch 12 (PowerPC Open Firmware), and no
        // vendor-class fallback.
        "arch-12" => |r| {
            r.dnsmasq_args = r
                .dnsmasq_args
                .iter()
                .map(|a| a.replace("option:client-arch,11", "option:client-arch,12"))
                .filter(|a| !a.contains("PXEClient:Arch:00011"))
                .collect();
        },
        // Groups for `arch=x86_64` only, as one would guess for amd64.
        "no-i386-group" => |r| {
            r.tree
                .groups
                .retain(|g| g.selector.get("arch").map(String::as_str) != Some("i386"));
        },
        // No `initrd=initramfs.xz` on the kernel line.
        "no-initrd-arg" => |r| {
            for p in &mut r.tree.profiles {
                p.boot.args.retain(|a| !a.starts_with("initrd="));
            }
        },
        // No serial `console=` (what amd64 profiles had before issue 9): /dev/console is the
        // screen (`console=tty0`), and an IPMI SOL / serial log shows nothing after the EFI stub.
        "no-serial-console" => |r| {
            for p in &mut r.tree.profiles {
                p.boot
                    .args
                    .retain(|a| !a.starts_with("console=ttyS") && !a.starts_with("console=ttyAMA"));
            }
        },
        // Profiles with a kernel and no initrd at all (a hand-written profile that forgot it).
        "no-initrd" => |r| {
            for p in &mut r.tree.profiles {
                p.boot.initrd.clear();
                p.boot.args.retain(|a| !a.starts_with("initrd="));
            }
        },
        other => {
            panic!("unknown mutation {other:?} (arch-12, no-i386-group, no-initrd-arg, no-serial-console, no-initrd)")
        }
    }
}

fn assert_fails_at(o: &Outcome, stage: Stage) {
    assert_eq!(
        o.failed_at,
        Some(stage),
        "expected the boot to break at {stage}:\n{}",
        o.report()
    );
}

/// AAVMF sends client-arch 11: with the guide's `client-arch,12` it is offered an address
/// without a boot file, which a PXE client does not take: after its DHCP retries (about a
/// minute) AAVMF says `PXE-E16: No valid offer received` and moves on to IPv6.
#[test]
fn mutation_arch_12_leaves_arm64_uefi_without_a_boot_file() {
    let Some(o) = boot(Client::Arm64Uefi, Mode::Full, mutation("arch-12")) else {
        return;
    };
    assert_fails_at(&o, Stage::DhcpOffer);
    let dnsmasq = &o.evidence.dnsmasq;
    let mac = Client::Arm64Uefi.mac();
    let offered = dnsmasq.lines().any(|l| l.contains("DHCPOFFER(") && l.contains(mac));
    assert!(offered, "dnsmasq offered it an address all the same:\n{}", o.report());
    assert!(
        o.evidence.serial.contains("PXE-E16"),
        "AAVMF says `No valid offer`:\n{}",
        o.report()
    );
    // `cozyboot nodes` says so: offered, no boot file, and the arch-12 rule named.
    let j = o.journey().expect("cozyboot's journeys hold the VM");
    assert!(j.offered && j.stages.is_empty() && j.client_arch == Some(11), "{j:#?}");
    let d = cozyboot::journey::diagnosis::diagnose(
        &j,
        &journey_site(&[cozyboot::artifacts::arch::Arch::Arm64]),
        i64::MAX / 2,
    );
    assert!(d.finding.contains("client-arch,12"), "{d:#?}");
}

/// The site these tests serve, as `cozyboot nodes` judges journeys against it.
fn journey_site(arches: &[cozyboot::artifacts::arch::Arch]) -> cozyboot::journey::diagnosis::Site {
    cozyboot::journey::diagnosis::Site {
        arches: arches.to_vec(),
        config_for_all: false,
        config_macs: Vec::new(),
        http: "test".into(),
    }
}

/// A BIOS machine chained through iPXE reports `arch=i386`: without the `i386` group matchbox
/// has no profile for it and iPXE stops at "No such file".
#[test]
fn mutation_no_i386_group_stops_bios_at_ipxe() {
    let Some(o) = boot(Client::X86Bios, Mode::Full, mutation("no-i386-group")) else {
        return;
    };
    assert_fails_at(&o, Stage::Ipxe);
    assert!(o.evidence.matchbox.contains("No matching profile"), "{}", o.report());
    assert!(o.evidence.matchbox.contains("arch:i386"), "{}", o.report());
    let j = o.journey().expect("cozyboot's journeys hold the VM");
    assert!(j.no_profile, "{j:#?}");
    let d = cozyboot::journey::diagnosis::diagnose(
        &j,
        &journey_site(&[cozyboot::artifacts::arch::Arch::Amd64]),
        i64::MAX / 2,
    );
    assert_eq!(
        d.stopped_before,
        Some(cozyboot::journey::model::Stage::Profile),
        "{d:#?}"
    );
    assert!(d.finding.contains("no group for arch=i386"), "{d:#?}");
}

/// A data dir nobody provisioned the arm64 iPXE into: AAVMF is offered `bootaa64.efi`, dnsmasq
/// answers its TFTP read with "file not found", and AAVMF gives up on PXE over IPv4.
/// `cozyboot nodes` names the missing file and says how to put it there.
#[test]
fn missing_bootloader_stops_arm64_uefi_at_tftp_with_the_file_named() {
    let Some(o) = boot_with(
        |a| a.without_bootloader(Bootloader::Arm64Efi),
        Client::Arm64Uefi,
        Mode::Full,
        |_| {},
    ) else {
        return;
    };
    assert_fails_at(&o, Stage::Tftp);
    assert!(
        o.evidence.dnsmasq.contains("bootaa64.efi not found for"),
        "dnsmasq said file not found:\n{}",
        o.report()
    );
    let j = o.journey().expect("cozyboot's journeys hold the VM");
    assert_eq!(j.tftp_missing.as_deref(), Some("bootaa64.efi"), "{j:#?}");
    assert_eq!(j.client_arch, Some(11), "{j:#?}");
    let d = cozyboot::journey::diagnosis::diagnose(
        &j,
        &journey_site(&[cozyboot::artifacts::arch::Arch::Arm64]),
        i64::MAX / 2,
    );
    assert_eq!(d.stopped_before, Some(cozyboot::journey::model::Stage::Tftp), "{d:#?}");
    assert!(d.finding.contains("`bootaa64.efi` not found"), "{d:#?}");
    assert!(d.fix.contains("cozyboot up"), "{d:#?}");
}

/// A profile with a kernel and no initrd: iPXE fetches the kernel and boots it, the EFI stub
/// finds no initramfs, and Linux never runs /init. `cozyboot nodes` says the kernel came and
/// the initramfs never did.
#[test]
fn kernel_without_initramfs_is_diagnosed_at_the_initramfs() {
    let Some(o) = boot(Client::X64Uefi, Mode::Full, mutation("no-initrd")) else {
        return;
    };
    assert_fails_at(&o, Stage::Linux);
    assert_eq!(o.initrd_via, None, "the kernel found no initrd:\n{}", o.report());
    assert!(
        !o.evidence.matchbox.contains("initramfs.xz"),
        "nothing asked for the initramfs:\n{}",
        o.report()
    );
    let j = o.journey().expect("cozyboot's journeys hold the VM");
    assert!(j.reached(cozyboot::journey::model::Stage::Kernel), "{j:#?}");
    assert!(!j.reached(cozyboot::journey::model::Stage::Initramfs), "{j:#?}");
    let d = cozyboot::journey::diagnosis::diagnose(
        &j,
        &journey_site(&[cozyboot::artifacts::arch::Arch::Amd64]),
        i64::MAX / 2,
    );
    assert_eq!(
        d.stopped_before,
        Some(cozyboot::journey::model::Stage::Initramfs),
        "{d:#?}"
    );
    assert!(
        d.finding.contains("kernel was fetched but never the initramfs"),
        "{d:#?}"
    );
}

/// Without a serial `console=` last on the kernel line (amd64 profiles before issue 9 had only
/// `console=tty0`), Linux runs /init and powers off, but /dev/console is the screen: the
/// serial log (what IPMI SOL shows) never gets the marker.
#[test]
fn mutation_no_serial_console_leaves_the_serial_log_without_the_marker() {
    let Some(o) = boot(Client::X64Uefi, Mode::Full, mutation("no-serial-console")) else {
        return;
    };
    assert_fails_at(&o, Stage::Linux);
    assert!(o.initrd_via.is_some(), "the kernel loaded its initrd:\n{}", o.report());
    assert_eq!(
        o.qemu_exit.as_deref(),
        Some("exit status: 0"),
        "/init ran and powered the machine off:\n{}",
        o.report()
    );
}

/// The iPXE of trixie hands UEFI kernels the initrd through LoadFile2 (the EFI stub says
/// `Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path`), so there a missing
/// `initrd=` shows only in the command line, which every boot test checks. An older iPXE
/// (bookworm's x86_64 ipxe.efi, 2019) offers no LoadFile2: the kernel finds the initrd only
/// through `initrd=initramfs.xz`, and without it never runs /init.
#[test]
fn mutation_no_initrd_arg_leaves_an_older_ipxe_kernel_without_initramfs() {
    let Some(o) = boot_with(older_x86_ipxe, Client::X64Uefi, Mode::Full, mutation("no-initrd-arg")) else {
        return;
    };
    assert_fails_at(&o, Stage::Linux);
    assert_eq!(o.initrd_via, None, "{}", o.report());
}

/// The control for the test above: the same older iPXE boots with cozyboot's arguments, and
/// the kernel loads the initrd through the `initrd=` option.
#[test]
fn x64_uefi_with_an_older_ipxe_boots_through_the_initrd_arg() {
    let Some(o) = boot_with(older_x86_ipxe, Client::X64Uefi, Mode::Full, |_| {}) else {
        return;
    };
    assert_booted(&o);
    assert_eq!(o.initrd_via.as_deref(), Some("command line option"), "{}", o.report());
}

fn older_x86_ipxe(a: Artifacts) -> Artifacts {
    let file = a.path("ipxe/ipxe-bookworm.efi");
    a.with_bootloader(Bootloader::X86_64Efi, file)
}
