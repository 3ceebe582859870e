//! Logging in the shape of logrus' text formatter (what matchbox prints when stderr
//! is not a terminal): `time="2024-01-02T03:04:05Z" level=info msg="HTTP GET /"`.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Panic = 0,
    Fatal = 1,
    Error = 2,
    Warn = 3,
    Info = 4,
    Debug = 5,
    Trace = 6,
}

impl Level {
    /// logrus.ParseLevel
    pub fn parse(s: &str) -> Result<Level, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "panic" => Level::Panic,
            "fatal" => Level::Fatal,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return Err(format!("not a valid logrus Level: {s:?}")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Level::Panic => "panic",
            Level::Fatal => "fatal",
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}

pub fn enabled(l: Level) -> bool {
    (l as u8) <= LEVEL.load(Ordering::Relaxed)
}

fn quote_if_needed(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+'));
    if plain {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

/// Log a message with optional `key=value` fields (sorted like logrus).
pub fn log(level: Level, msg: &str, fields: &[(&str, String)]) {
    if !enabled(level) {
        return;
    }
    let mut line = format!(
        "time={} level={} msg={}",
        quote_if_needed(&rfc3339_now()),
        level.name(),
        quote_if_needed(msg)
    );
    let mut fields: Vec<&(&str, String)> = fields.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in fields {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(&quote_if_needed(v));
    }
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub fn info(msg: &str) {
    log(Level::Info, msg, &[]);
}
pub fn debug(msg: &str) {
    log(Level::Debug, msg, &[]);
}
pub fn warn(msg: &str) {
    log(Level::Warn, msg, &[]);
}
pub fn error(msg: &str) {
    log(Level::Error, msg, &[]);
}

/// logrus' Fatal: log at fatal level (always shown) and exit 1.
pub fn fatal(msg: &str) -> ! {
    let line = format!(
        "time={} level=fatal msg={}\n",
        quote_if_needed(&rfc3339_now()),
        quote_if_needed(msg)
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    std::process::exit(1)
}

/// Current UTC time as RFC 3339 with seconds.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// An HTTP date (RFC 7231 IMF-fixdate) for `secs` since the epoch.
pub fn http_date(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    let wd = ((secs / 86400 + 4) % 7) as usize; // 1970-01-01 was a Thursday
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT",
        DAYS[wd],
        MONTHS[(mo - 1) as usize]
    )
}

fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's days_from_civil inverse
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(civil(951_782_400).0, 2000); // 2000-02-29
        assert_eq!(civil(951_782_400).1, 2);
        assert_eq!(civil(951_782_400).2, 29);
    }

    #[test]
    fn levels() {
        assert_eq!(Level::parse("WARNING").unwrap(), Level::Warn);
        assert!(Level::parse("loud").is_err());
    }
}
