//! dnsmasq's log: did it start, did it complain, and which files did clients ask for in vain.

use super::{capped, Check};
use crate::render::dnsmasq::TFTP_ROOT;
use std::collections::BTreeMap;

/// Lines read from the end of the log: enough for a busy day, bounded for a busy year.
pub const TAIL: usize = 5000;
const STARTED: &str = "started, version";
const SHOWN: usize = 10;

pub fn checks(log: Option<&str>) -> Vec<Check> {
    let ids = [
        "logs.dnsmasq.started",
        "logs.dnsmasq.errors",
        "logs.dnsmasq.tftp-not-found",
    ];
    let Some(log) = log else {
        return ids
            .iter()
            .map(|id| Check::skip(*id, "no dnsmasq log to read (no container)"))
            .collect();
    };
    vec![started(ids[0], log), errors(ids[1], log), not_found(ids[2], log)]
}

fn started(id: &str, log: &str) -> Check {
    match log.lines().rev().find(|l| l.contains(STARTED)) {
        Some(line) => Check::pass(id, "dnsmasq logged that it started").evidence(line.trim()),
        None => {
            let last = log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev();
            Check::fail(id, format!("dnsmasq never logged `{STARTED}`"))
                .evidence_all(last.map(|l| format!("log: {l}")))
                .fix("read `cozyboot logs dnsmasq`: a bad option or a port in use stops it at start")
        }
    }
}

/// dnsmasq words its own problems `failed to ...`, `bad ...` and `illegal ...`.
pub fn is_error(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.contains("failed to")
        || lower.contains("illegal")
        || lower.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == "bad")
}

fn errors(id: &str, log: &str) -> Check {
    let lines: Vec<String> = log
        .lines()
        .filter(|l| is_error(l))
        .map(|l| l.trim().to_string())
        .collect();
    if lines.is_empty() {
        return Check::pass(id, "no `failed to`, `bad` or `illegal` lines");
    }
    Check::warn(id, format!("dnsmasq logged {} error line(s)", lines.len()))
        .evidence_all(capped(lines, SHOWN))
        .fix("read the lines above; `cozyboot logs dnsmasq` shows them in context")
}

/// The file a TFTP request failed on, relative to the TFTP root, and why: dnsmasq logs
/// `file /var/lib/tftpboot/x not found` and `cannot access /var/lib/tftpboot/x: Permission denied`.
pub fn missing_file(line: &str) -> Option<(String, String)> {
    let (path, why) = if let Some(rest) = line.split("cannot access ").nth(1) {
        let (path, why) = rest.split_once(": ")?;
        (path, why.trim())
    } else {
        (line.split("file ").nth(1)?.strip_suffix(" not found")?, "not found")
    };
    let path = path.trim();
    let relative = path.strip_prefix(TFTP_ROOT).unwrap_or(path).trim_start_matches('/');
    Some((relative.to_string(), why.to_string()))
}

fn not_found(id: &str, log: &str) -> Check {
    let mut asked: BTreeMap<(String, String), usize> = BTreeMap::new();
    for key in log
        .lines()
        .filter(|l| l.contains("dnsmasq-tftp"))
        .filter_map(missing_file)
    {
        *asked.entry(key).or_default() += 1;
    }
    if asked.is_empty() {
        return Check::pass(id, "no client asked TFTP for a missing or unreadable file");
    }
    let list: Vec<String> = asked.iter().map(|((f, why), n)| format!("{f}: {why} ({n}×)")).collect();
    Check::warn(id, format!("clients asked TFTP for files it could not send: {}", list.join(", ")))
        .evidence_all(capped(asked.keys().map(|(f, why)| format!("{TFTP_ROOT}/{f}: {why}")), SHOWN))
        .fix("a client asked for a bootloader the TFTP root lacks or cannot read: check the --bootloader-* names and assets.bootloader.*")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Status;

    const HEALTHY: &str = "dnsmasq: started, version 2.90 DNS disabled\n\
        dnsmasq-dhcp: DHCP, IP range 10.0.0.100 -- 10.0.0.150, lease time 12h\n\
        dnsmasq-tftp: error 8 User aborted the transfer received from 10.0.0.2\n\
        dnsmasq-tftp: sent /var/lib/tftpboot/bootaa64.efi to 10.0.0.2\n";

    #[test]
    fn a_healthy_log_passes() {
        let checks = checks(Some(HEALTHY));
        assert!(checks.iter().all(|c| c.status == Status::Pass), "{checks:#?}");
    }

    #[test]
    fn error_words_and_missing_files_are_reported() {
        let log = format!(
            "{HEALTHY}dnsmasq: bad command line options: try --help\n\
             dnsmasq-tftp: file /var/lib/tftpboot/bootaa64.efi not found\n\
             dnsmasq-tftp: file /var/lib/tftpboot/bootaa64.efi not found\n\
             dnsmasq: failed to create listening socket for port 67: Address in use\n"
        );
        let checks = checks(Some(&log));
        assert_eq!(checks[1].status, Status::Warn);
        assert_eq!(checks[1].evidence.len(), 2, "{:?}", checks[1].evidence);
        assert_eq!(checks[2].status, Status::Warn);
        assert!(
            checks[2].finding.contains("bootaa64.efi: not found (2×)"),
            "{}",
            checks[2].finding
        );
    }

    #[test]
    fn words_that_merely_contain_bad_are_not_errors() {
        assert!(!is_error("dnsmasq-dhcp: vendor class: badger"));
        assert!(is_error("dnsmasq: illegal repeated keyword"));
    }

    #[test]
    fn no_start_line_fails_and_no_container_skips() {
        assert_eq!(checks(Some("dnsmasq: bad option\n"))[0].status, Status::Fail);
        assert!(checks(None).iter().all(|c| c.status == Status::Skip));
        let missing = |l| missing_file(l).map(|(f, why)| format!("{f}|{why}"));
        assert_eq!(
            missing("dnsmasq-tftp: file /var/lib/tftpboot/x/y.efi not found").as_deref(),
            Some("x/y.efi|not found")
        );
        assert_eq!(
            missing("dnsmasq-tftp: cannot access /var/lib/tftpboot/b.efi: Permission denied").as_deref(),
            Some("b.efi|Permission denied")
        );
        assert_eq!(missing("dnsmasq-tftp: sent /var/lib/tftpboot/b.efi to 10.0.0.2"), None);
    }
}
