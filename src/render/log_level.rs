//! The `log-level` setting. matchbox logs its start line and every request at info, and
//! cozyboot reads those lines: `nodes` and `validate` follow machines through them, and `up`
//! waits for the start line where it cannot ask over HTTP. Run at warn, matchbox would blind
//! them all. So matchbox never runs below info (debug when asked for), and the setting decides
//! what `cozyboot logs matchbox` shows.
//!
//! matchbox v0.11.0 logs with logrus's text formatter (stderr is no terminal in a container):
//! `time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /boot.ipxe"`, the level named as
//! logrus's `Level.String()` does (`warning`, not `warn`).

use crate::settings::{choice::Choice, LogLevel};

/// logrus's `Level` numbers: the lower, the more severe.
const ERROR: u8 = 2;
const WARNING: u8 = 3;
const INFO: u8 = 4;
const DEBUG: u8 = 5;

fn severity(logrus_name: &str) -> Option<u8> {
    Some(match logrus_name {
        "panic" => 0,
        "fatal" => 1,
        "error" => ERROR,
        "warning" | "warn" => WARNING,
        "info" => INFO,
        "debug" => DEBUG,
        "trace" => 6,
        _ => return None,
    })
}

/// The `-log-level` matchbox runs with for the `log-level` setting.
pub fn matchbox_runs_at(setting: &str) -> &'static str {
    match LogLevel::parse(setting) {
        Ok(LogLevel::Debug) => "debug",
        _ => "info",
    }
}

/// Which of matchbox's lines `cozyboot logs` shows at one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// The least severe level shown.
    least: u8,
}

impl Shown {
    /// For the `log-level` setting; a value that is no level (a record written by hand) shows
    /// everything rather than hide lines.
    pub fn at(setting: &str) -> Shown {
        let least = match LogLevel::parse(setting) {
            Ok(LogLevel::Debug) => DEBUG,
            Ok(LogLevel::Info) | Err(_) => INFO,
            Ok(LogLevel::Warn) => WARNING,
            Ok(LogLevel::Error) => ERROR,
        };
        Shown { least }
    }

    /// Whether some lines matchbox writes are left out (at info and debug it writes only
    /// what is shown).
    pub fn hides_any(self) -> bool {
        self.least < INFO
    }

    /// Whether `line` is shown: a logrus line at the level or more severe; anything else (a
    /// Go panic's trace, a flag error before logging started) always.
    pub fn shows(self, line: &str) -> bool {
        level_of(line).is_none_or(|l| l <= self.least)
    }

    /// The lines of `text` that are shown, each with its line ending; with `tail`, the last
    /// `tail` of those.
    pub fn filter(self, text: &str, tail: Option<usize>) -> String {
        let shown: Vec<&str> = text.split_inclusive('\n').filter(|l| self.shows(l)).collect();
        let skip = tail.map_or(0, |n| shown.len().saturating_sub(n));
        shown[skip..].concat()
    }
}

/// The level of a logrus text line: its first `level=` word (logrus writes `time`, `level`,
/// `msg` in that order, so a `level=` inside the message comes later).
fn level_of(line: &str) -> Option<u8> {
    line.split(' ')
        .find_map(|word| word.strip_prefix("level="))
        .map(|v| v.trim_end().trim_matches('"'))
        .and_then(severity)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines in the shape matchbox v0.11.0 writes them (logrus text, levels as logrus names
    /// them), with a Go panic's first lines.
    const LOG: &str = "\
time=\"2026-12-06T02:00:00Z\" level=info msg=\"Starting matchbox HTTP server on 0.0.0.0:8080\"
time=\"2026-12-06T02:00:05Z\" level=info msg=\"HTTP GET /boot.ipxe\"
time=\"2026-12-06T02:00:05Z\" level=warning msg=\"No matching profile\" labels=\"map[mac:52:54:00:c0:0b:11]\"
time=\"2026-12-06T02:00:06Z\" level=debug msg=\"level=error is in this message\"
time=\"2026-12-06T02:00:07Z\" level=error msg=\"Unable to read group\"
panic: runtime error: invalid memory address or nil pointer dereference
";

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn matchbox_never_runs_below_info() {
        for (setting, runs) in [
            ("debug", "debug"),
            ("info", "info"),
            ("warn", "info"),
            ("error", "info"),
        ] {
            assert_eq!(matchbox_runs_at(setting), runs, "{setting}");
        }
    }

    #[test]
    fn each_setting_shows_its_level_and_the_more_severe_ones() {
        let all = lines(LOG);
        assert_eq!(lines(&Shown::at("debug").filter(LOG, None)), all);
        assert_eq!(
            lines(&Shown::at("info").filter(LOG, None)),
            [all[0], all[1], all[2], all[4], all[5]]
        );
        assert_eq!(lines(&Shown::at("warn").filter(LOG, None)), [all[2], all[4], all[5]]);
        assert_eq!(lines(&Shown::at("error").filter(LOG, None)), [all[4], all[5]]);
        assert!(Shown::at("warn").hides_any() && Shown::at("error").hides_any());
        assert!(!Shown::at("info").hides_any() && !Shown::at("debug").hides_any());
    }

    #[test]
    fn docker_timestamps_and_line_endings_are_kept() {
        let stamped = "2026-12-06T02:00:05.123456789Z time=\"2026-12-06T02:00:05Z\" level=info msg=\"HTTP GET /\"\r\n\
                       2026-12-06T02:00:06.000000001Z time=\"2026-12-06T02:00:06Z\" level=error msg=x\r\n";
        assert_eq!(
            Shown::at("error").filter(stamped, None),
            "2026-12-06T02:00:06.000000001Z time=\"2026-12-06T02:00:06Z\" level=error msg=x\r\n"
        );
        assert_eq!(Shown::at("info").filter(stamped, None), stamped);
    }

    #[test]
    fn tail_counts_the_lines_shown() {
        let all = lines(LOG);
        assert_eq!(lines(&Shown::at("warn").filter(LOG, Some(2))), [all[4], all[5]]);
        assert_eq!(lines(&Shown::at("warn").filter(LOG, Some(9))), [all[2], all[4], all[5]]);
        assert_eq!(Shown::at("warn").filter(LOG, Some(0)), "");
    }

    #[test]
    fn a_value_that_is_no_level_hides_nothing_matchbox_writes() {
        assert_eq!(Shown::at("loud"), Shown::at("info"));
    }
}
