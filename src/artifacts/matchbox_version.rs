//! Which matchbox an image holds, and whether cozyboot's groups can match on it.
//!
//! cozyboot's groups select on the `arch` label, which matchbox's `/boot.ipxe` sends only
//! since v0.11.0: with an older matchbox no group ever matches and every machine gets a 404.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The oldest matchbox whose `/boot.ipxe` reports `arch=${buildarch}`.
pub const MINIMUM: Version = Version {
    major: 0,
    minor: 11,
    patch: 0,
};

/// The arguments that make matchbox print its version and exit.
pub const VERSION_ARGS: &[&str] = &["-version"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Reads `matchbox -version` output: `v0.11.0`, also `0.11.0` or a build's `v0.11.0-12-gabc`.
pub fn parse(output: &str) -> Option<Version> {
    let word = output.split_whitespace().next()?;
    let word = word.strip_prefix('v').unwrap_or(word);
    let core = word.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let (major, minor, patch) = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(Version { major, minor, patch })
}

/// What `matchbox -version` said about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Supported(Version),
    TooOld(Version),
    /// It did not say a version (exit code and output, for the warning).
    Unknown(String),
}

pub fn judge(exit_code: i64, output: &str) -> Verdict {
    match parse(output) {
        Some(v) if exit_code == 0 && v >= MINIMUM => Verdict::Supported(v),
        Some(v) if exit_code == 0 => Verdict::TooOld(v),
        _ => Verdict::Unknown(format!(
            "`matchbox -version` exited {exit_code} and said {:?}",
            output.trim()
        )),
    }
}

/// The error or warning text for a matchbox image that is too old.
pub fn too_old(image: &str, v: Version) -> String {
    format!(
        "{image} is matchbox {v}; cozyboot's groups select on `arch`, which matchbox sends only since {MINIMUM}, \
         so no machine would get a profile\n  fix: use a matchbox image built from quay.io/poseidon/matchbox:{MINIMUM} or newer (--tag, --registry)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_release_and_build_versions() {
        assert_eq!(parse("v0.11.0\n"), Some(MINIMUM));
        assert_eq!(
            parse("0.10.0"),
            Some(Version {
                major: 0,
                minor: 10,
                patch: 0
            })
        );
        assert_eq!(parse("v0.11.0-12-g1a2b3c4"), Some(MINIMUM));
        assert_eq!(parse("v1.2"), None);
        assert_eq!(parse("flag provided but not defined: -version"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn judges_against_v0_11_0() {
        assert_eq!(judge(0, "v0.11.0"), Verdict::Supported(MINIMUM));
        assert!(matches!(judge(0, "v0.12.1"), Verdict::Supported(_)));
        assert!(matches!(judge(0, "v0.10.0"), Verdict::TooOld(_)));
        assert!(matches!(judge(2, "v0.11.0"), Verdict::Unknown(_)));
        let message = too_old("m:old", parse("v0.10.0").unwrap());
        assert!(message.contains("v0.10.0") && message.contains("v0.11.0") && message.contains("fix:"));
    }
}
