//! U-Boot's own network boot: a board running U-Boot (Talos's own Raspberry Pi firmware,
//! Debian's `u-boot-rpi`) boots Talos from a boot script cozyboot renders, not through iPXE.
//!
//! Why not iPXE: U-Boot's EFI network boot (`PXEClient:Arch:00011`) does start the arm64
//! iPXE, but iPXE then never sends its own DHCP request under U-Boot's EFI network protocol
//! (measured with Debian's `u-boot-qemu`, see netboot-facts.md). U-Boot's distro boot asks
//! for `boot.scr.uimg` before it tries EFI (`bootcmd_dhcp` of `include/config_distro_bootcmd.h`;
//! the `script` bootmeth of `boot/bootmeth_script.c` in bootstd): its first DHCP carries
//! vendor class `U-Boot.armv8` and client arch 22, and it then reads `boot.scr.uimg` over TFTP
//! from the server that answered and `source`s it.
//!
//! The script reads the same kernel and initramfs as the iPXE path, over TFTP from the same
//! assets directory (dnsmasq's TFTP root), and boots them with `booti` and the arm64 profile's
//! own arguments, for each machine the group matchbox would pick for it: the Talos config URL
//! is the same `/generic` with U-Boot's `${ethaddr}` where iPXE has `${mac:hexhyp}`.

use super::matchbox::{Profile, Tree};
use super::talos::CONFIG_QUERY;
use super::File;
use crate::artifacts::arch::{Arch, UBOOT_NON_EFI_PXE};
use crate::artifacts::{layout, uimage};
use crate::settings::{DhcpMode, Settings};
use serde::Serialize;
use std::net::Ipv4Addr;

/// The file U-Boot asks for: the default of its `boot_script_dhcp` variable.
pub const SCRIPT: &str = "boot.scr.uimg";
/// The TFTP file the script asks for first, followed by the MAC: never there, and named so
/// that dnsmasq's "not found" line says which machine runs the script (`journey`).
pub const ANNOUNCE: &str = "cozyboot-uboot-";
/// The dnsmasq tag of U-Boot's own DHCP requests.
pub const TAG: &str = "uboot-arm64";
/// U-Boot's DHCP vendor class on arm64 (`BOOTP_VCI_STRING`'s default "if ARM64", cmd/Kconfig).
pub const VENDOR_CLASS: &str = "U-Boot.armv8";
/// The only architecture U-Boot boards are served: Talos's U-Boot boards are arm64.
const ARCH: Arch = Arch::Arm64;

/// What the script needs besides the tree: where the files are over TFTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Boot {
    /// The image's name in its header (`mkimage -n`).
    pub name: String,
    /// The kernel and initramfs, relative to the TFTP root.
    pub kernel: String,
    pub initrd: String,
}

/// `Some` when U-Boot boards are served (arm64 served, `uboot-netboot` on).
pub fn boot(s: &Settings) -> Option<Boot> {
    s.serves_uboot().then(|| {
        let dir = format!("talos/{}", ARCH.asset_dir());
        Boot {
            name: format!("cozyboot Talos {} {ARCH}", s.tag),
            kernel: format!("{dir}/{}", layout::KERNEL),
            initrd: format!("{dir}/{}", layout::INITRAMFS),
        }
    })
}

/// dnsmasq's lines for U-Boot's own DHCP. Full mode only: dnsmasq in proxy mode answers only
/// clients whose vendor class starts with `PXEClient`, and U-Boot drops every reply that
/// offers no address (`dhcp_handler` in net/bootp.c, unless built with
/// `SERVERIP_FROM_PROXYDHCP`); beside another DHCP server, that server must name this one as
/// next-server (docs/raspberry-pi.md).
pub fn dnsmasq_lines(s: &Settings, ipxe_tag: &str) -> Vec<String> {
    if !s.serves_uboot() || s.dhcp == DhcpMode::Proxy {
        return Vec::new();
    }
    lines(s.server_ip, &format!("tag:!{ipxe_tag},"))
}

/// What a site's own DHCP server, when it is dnsmasq, needs beside cozyboot in proxy mode:
/// U-Boot's requests answered with this boot server as next-server and the script as boot
/// file (docs/raspberry-pi.md gives the same for other servers).
pub fn site_dhcp_lines(boot_server: Ipv4Addr) -> Vec<String> {
    lines(boot_server, "")
}

fn lines(server: Ipv4Addr, guard: &str) -> Vec<String> {
    vec![
        format!("--dhcp-vendorclass=set:{TAG},{VENDOR_CLASS}"),
        format!("--dhcp-match=set:{TAG},option:client-arch,{UBOOT_NON_EFI_PXE}"),
        format!("--dhcp-boot=tag:{TAG},{guard}{SCRIPT},,{server}"),
    ]
}

/// The script's text, from the arm64 profiles of `tree` as matchbox would pick them.
pub fn script_text(boot: &Boot, tree: &Tree) -> String {
    let arch_dir = format!("/talos/{}/", ARCH.asset_dir());
    let profile = |id: &str| {
        tree.profiles
            .iter()
            .find(|p| p.id == id && p.boot.kernel.contains(&arch_dir))
    };
    let buildarch = ARCH.ipxe_buildarches()[0];
    // The arch-wide group, then each machine's own (more selectors: it wins in matchbox).
    let site = tree
        .groups
        .iter()
        .filter(|g| g.selector.len() == 1 && g.selector.get("arch").is_some_and(|a| a == buildarch))
        .find_map(|g| profile(&g.profile));
    let machines: Vec<(&str, &Profile)> = tree
        .groups
        .iter()
        .filter(|g| g.selector.get("arch").is_some_and(|a| a == buildarch) && g.selector.len() == 2)
        .filter_map(|g| Some((g.selector.get("mac")?.as_str(), profile(&g.profile)?)))
        .collect();

    let mut t = String::new();
    t.push_str(&format!(
        "# {}: written by cozyboot, U-Boot's own network boot of Talos.\n\
         # The kernel, initramfs and arguments of the iPXE path, over TFTP from the server\n\
         # that answered U-Boot's DHCP.\n",
        boot.name
    ));
    t.push_str("echo \"cozyboot: Talos for ${ethaddr} from ${serverip}\"\n");
    // Beside another DHCP server dnsmasq never sees U-Boot's DHCP, so nothing ties this
    // address to a machine: asking for a file named after the MAC (not there; dnsmasq logs
    // the request, U-Boot does not retry a missing file) tells `cozyboot nodes`. Loaded, were
    // it ever there, where the kernel goes next, never over this script at `scriptaddr`.
    t.push_str(&format!("tftpboot ${{kernel_addr_r}} {ANNOUNCE}${{ethaddr}}\n"));
    // Always set: a board's U-Boot may hold arguments of its own (the Pi firmware's).
    let site_args = site.map(bootargs).unwrap_or_default();
    t.push_str(&format!("setenv bootargs \"{site_args}\"\n"));
    for (mac, args) in machines.into_iter().map(|(mac, p)| (mac, bootargs(p))) {
        // The same line as the site's: the machine's own config differs only in what
        // matchbox serves at the same URL.
        if args != site_args {
            t.push_str(&format!(
                "if test \"${{ethaddr}}\" = \"{mac}\"; then setenv bootargs \"{args}\"; fi\n"
            ));
        }
    }
    t.push_str(&format!(
        "tftpboot ${{kernel_addr_r}} {kernel} || exit\n\
         # The initramfs goes past the kernel and room for its BSS, whatever its size: the\n\
         # boards' own ramdisk_addr_r leaves too little room for some kernels.\n\
         setexpr cozyboot_initrd ${{kernel_addr_r}} + ${{filesize}}\n\
         setexpr cozyboot_initrd ${{cozyboot_initrd}} + 0x4000000\n\
         setexpr cozyboot_initrd ${{cozyboot_initrd}} / 0x200000\n\
         setexpr cozyboot_initrd ${{cozyboot_initrd}} * 0x200000\n\
         tftpboot ${{cozyboot_initrd}} {initrd} || exit\n\
         # The device tree the board's firmware handed U-Boot, else U-Boot's own.\n\
         if test -z \"${{fdt_addr}}\"; then setenv fdt_addr ${{fdtcontroladdr}}; fi\n\
         booti ${{kernel_addr_r}} ${{cozyboot_initrd}}:${{filesize}} ${{fdt_addr}}\n\
         echo \"cozyboot: booti returned: the kernel at {kernel} is not an arm64 Image\"\n",
        kernel = boot.kernel,
        initrd = boot.initrd,
    ));
    t
}

/// The script as U-Boot reads it: a legacy script image.
pub fn script_file(boot: &Boot, tree: &Tree) -> File {
    File {
        path: format!("assets/{SCRIPT}"),
        content: uimage::script(ARCH, &boot.name, &script_text(boot, tree)),
    }
}

/// One profile's arguments as the value of a double-quoted hush word: what hush would
/// expand or end the word at is escaped, and the Talos config query iPXE expands becomes
/// U-Boot's.
fn bootargs(p: &Profile) -> String {
    let uboot_query = format!("arch={}&mac=${{ethaddr}}", ARCH.ipxe_buildarches()[0]);
    p.boot
        .args
        .iter()
        .map(|a| match a.strip_suffix(CONFIG_QUERY) {
            Some(url) if a.starts_with("talos.config=") => format!("{}{uboot_query}", escape(url)),
            _ => escape(a),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn escape(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for ch in word.chars() {
        if matches!(ch, '"' | '$' | '\\' | '`') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render;
    use crate::settings::for_tests;

    fn site(extra: serde_json::Value) -> Settings {
        let mut base = serde_json::json!({
            "iface": "eth0", "dhcp-range": "10.20.13.150,10.20.13.200",
            "arch": ["arm64", "amd64"], "tag": "v1.13.0",
        });
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        for_tests(base)
    }

    #[test]
    fn the_script_boots_the_arm64_profile_with_its_own_arguments() {
        let s = site(serde_json::json!({}));
        let r = render::render(&s);
        let text = script_text(&boot(&s).unwrap(), &r.tree);
        let arm64 = r.tree.profiles.iter().find(|p| p.id.ends_with("arm64")).unwrap();
        let line = text.lines().find(|l| l.starts_with("setenv bootargs ")).unwrap();
        for a in &arm64.boot.args {
            assert!(line.contains(a.as_str()), "{a} missing from {line}");
        }
        assert!(text.contains("tftpboot ${kernel_addr_r} talos/arm64/vmlinuz || exit"));
        assert!(text.contains("tftpboot ${cozyboot_initrd} talos/arm64/initramfs.xz || exit"));
        assert!(text.contains("booti ${kernel_addr_r} ${cozyboot_initrd}:${filesize} ${fdt_addr}"));
    }

    #[test]
    fn the_config_url_names_the_machine_as_u_boot_knows_it() {
        let s = site(serde_json::json!({}));
        let mut r = render::render(&s);
        for p in &mut r.tree.profiles {
            p.boot
                .args
                .push(format!("talos.config=http://10.20.13.140:8080/generic?{CONFIG_QUERY}"));
        }
        let text = script_text(&boot(&s).unwrap(), &r.tree);
        assert!(
            text.contains("talos.config=http://10.20.13.140:8080/generic?arch=arm64&mac=${ethaddr}"),
            "{text}"
        );
        assert!(!text.contains("hexhyp"), "{text}");
    }

    #[test]
    fn what_hush_would_expand_in_a_users_argument_is_escaped() {
        let s = site(serde_json::json!({ "kernel-args": ["talos.x=\"a$b\\c`d"] }));
        let r = render::render(&s);
        let text = script_text(&boot(&s).unwrap(), &r.tree);
        assert!(text.contains(r#"talos.x=\"a\$b\\c\`d"#), "{text}");
    }

    #[test]
    fn only_full_mode_with_arm64_answers_u_boot() {
        let full = site(serde_json::json!({}));
        assert_eq!(dnsmasq_lines(&full, "ipxe").len(), 3);
        assert!(dnsmasq_lines(&full, "ipxe")[2]
            .starts_with("--dhcp-boot=tag:uboot-arm64,tag:!ipxe,boot.scr.uimg,,10.20.13.140"));
        let amd64 = site(serde_json::json!({ "arch": ["amd64"] }));
        assert!(dnsmasq_lines(&amd64, "ipxe").is_empty());
        assert!(boot(&amd64).is_none());
        let proxy = for_tests(serde_json::json!({ "iface": "eth0", "arch": ["arm64"] }));
        assert_eq!(proxy.dhcp, DhcpMode::Proxy);
        assert!(dnsmasq_lines(&proxy, "ipxe").is_empty());
    }
}
