//! One boot's outcome: the stage reached, and a report that says why it stopped there.

use super::*;

pub struct Outcome {
    pub client: Client,
    pub mode: Mode,
    /// With [`TalosSource::UkiSplit`]: what `cozyboot::artifacts::uki::split` took out of the client's
    /// architecture's UKI.
    pub split: Option<cozyboot::artifacts::uki::Parts>,
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
            Client::Arm64Uefi => (11, Some("arm64")),
            Client::X64Uefi => (7, Some("x86_64")),
            Client::X86Bios => (0, Some("i386")),
            Client::Arm64UBoot => (22, None),
        };
        assert_eq!(j.client_arch, Some(code), "client-arch in {j:#?}");
        assert_eq!(j.ipxe_arch.as_deref(), buildarch, "iPXE arch in {j:#?}");
        // U-Boot never takes a proxy reply: beside a router, cozyboot's dnsmasq answers it nothing.
        let proxied = self.mode == Mode::Proxy && !self.client.uboot();
        assert_eq!(j.proxy, proxied, "proxy in {j:#?}");
        let leased = self.leased_ip();
        assert!(
            leased.is_some(),
            "no DHCPACK for {} in the logs:\n{}",
            self.client.mac(),
            self.report()
        );
        assert_eq!(j.ip, leased, "address in {j:#?}");
        let mut want = vec![J::Dhcp];
        if self.client.bootloader().is_some() || self.client.uboot() {
            want.push(J::Tftp);
        }
        if !self.client.uboot() {
            want.extend([J::BootIpxe, J::Profile]);
        }
        want.push(J::Kernel);
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
            r.push_str(&format!(
                "--- QEMU's output (last 20 lines):\n{}\n",
                tail(&self.evidence.qemu, 20)
            ));
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
            Client::Arm64UBoot => "U-Boot's DHCP was never offered boot.scr.uimg (the U-Boot.armv8 rule; the router's next-server in proxy mode)",
            _ => "dnsmasq never offered this firmware its bootloader (client-arch mapping?)",
        },
        Stage::Tftp => "the firmware got a boot file but never fetched it over TFTP",
        Stage::BootIpxe => "iPXE never fetched /boot.ipxe (did the bootloader run? did iPXE get the URL?)",
        Stage::Ipxe => "matchbox had no profile for the labels iPXE sent (groups vs ${buildarch})",
        Stage::Kernel if client.uboot() => "the boot script did not read the kernel over TFTP (see its `cozyboot:` lines on the console)",
        Stage::Kernel => "the /ipxe script did not lead iPXE to the kernel",
        Stage::Initrd => "iPXE did not fetch the initramfs",
        Stage::Linux => "the kernel did not run our /init (initramfs not found? see the serial console)",
        Stage::Answered => "/init listened (or found no DHCP lease: COZYBOOT-NET) but no connection came to its port",
    }
}
