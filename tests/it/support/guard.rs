//! One rule for every prerequisite a test needs (root, namespaces, Docker, the registry,
//! firmware): where the test must run — `CI=true`, or `scripts/test`, which sets
//! `COZYBOOT_REQUIRE=1` — a missing one FAILS the test, naming it; elsewhere the test returns
//! early and says `SKIPPED` where `cargo test` shows it. (libtest captures `println!` of a
//! passing test, so a skip printed that way would read as a silent pass.)

use std::io::Write;

/// Whether a missing prerequisite fails the test: `CI=true`, `COZYBOOT_REQUIRE=1`, or the
/// older per-area switch `area` (`COZYBOOT_REQUIRE_NETNS`, `COZYBOOT_REQUIRE_FIRMWARE`) set to 1.
pub fn required(area: Option<&str>) -> bool {
    let on = |key: &str| std::env::var_os(key).is_some_and(|v| v == "1");
    std::env::var_os("CI").is_some_and(|v| v == "true") || on("COZYBOOT_REQUIRE") || area.is_some_and(on)
}

/// Fails the test when it must run here; otherwise reports it as skipped and returns `None`.
#[track_caller]
pub fn skip<T>(area: Option<&str>, reason: &str) -> Option<T> {
    if required(area) {
        panic!("this test must run here (CI=true or COZYBOOT_REQUIRE=1) but {reason}");
    }
    report_skip(reason);
    None
}

/// Writes past libtest's capture (straight to the process's stderr), so that
/// `cargo test` shows the skip next to the test's `ok`.
pub fn report_skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}
