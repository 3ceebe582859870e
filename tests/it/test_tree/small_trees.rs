//! The rules on small trees written for the purpose: what they must find, and what they must
//! leave alone.

use super::*;

/// A tree with `files` (path, Rust source) under a fresh folder, and what the rule finds
/// there, as `file:line function` (and `assertion` for a skippable assertion).
fn findings_in(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    findings(dir.path())
        .into_iter()
        .map(|f| {
            let kind = if f.what == SKIPPABLE_ASSERTION {
                " assertion"
            } else {
                ""
            };
            format!("{}:{} {}{kind}", f.file, f.line, f.function)
        })
        .collect()
}

/// The engine tests as they were: a fixture that checks for the socket by hand, and tests
/// that check the host by hand or assert under an `if let`.
const CHECKED_BY_HAND: &str = r#"
struct Fixture;
impl Fixture {
    async fn new() -> Option<Fixture> {
        if !std::path::Path::new("/var/run/docker.sock").exists() {
            println!("skipped: no engine");
            return None;
        }
        Some(Fixture)
    }
}
async fn with_fixture(body: impl FnOnce(Fixture)) {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    body(fixture);
}
#[tokio::test]
async fn uses_the_engine() {
    with_fixture(|_| {}).await;
}
#[test]
fn needs_merged_usr() {
    if !merged_usr() {
        return;
    }
    assert!(true);
}
fn merged_usr() -> bool {
    std::path::Path::new("/bin").is_symlink()
}
#[test]
fn asserts_when_it_can() {
    if let Some(x) = std::env::var_os("X") {
        assert_eq!(x, "1");
    }
}
"#;

#[test]
fn the_rule_finds_prerequisites_checked_by_hand_and_skippable_assertions() {
    let found = findings_in(&[
        ("tests/it/engine.rs", CHECKED_BY_HAND),
        (
            "src/lib.rs",
            "#[cfg(test)]\nmod tests {\n    #[test]\n    fn needs_ipxe() {\n        if !std::path::Path::new(\"/usr/lib/ipxe\").exists() {\n            return;\n        }\n    }\n}\n",
        ),
    ]);
    assert_eq!(
        found,
        [
            "src/lib.rs:6 needs_ipxe",
            "tests/it/engine.rs:7 Fixture::new",
            "tests/it/engine.rs:14 with_fixture",
            "tests/it/engine.rs:25 needs_merged_usr",
            "tests/it/engine.rs:35 asserts_when_it_can assertion",
        ]
    );
}

/// What the tests do now: prerequisites through the guard (directly, through helpers, as a
/// `let ... else`, after a statement that called it), and early exits that are not skips.
const THROUGH_THE_GUARD: &str = r#"
mod support {
    pub mod guard {
        pub fn skip<T>(_area: Option<&str>, _reason: &str) -> Option<T> { None }
    }
}
fn engine_socket() -> Option<std::path::PathBuf> {
    let socket = std::path::PathBuf::from("/var/run/docker.sock");
    if socket.exists() {
        return Some(socket);
    }
    support::guard::skip(None, "no engine")
}
struct Fixture;
impl Fixture {
    async fn new() -> Option<Fixture> {
        let _socket = engine_socket()?;
        Some(Fixture)
    }
}
async fn with_fixture(body: impl FnOnce(Fixture)) {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    body(fixture);
}
fn unreachable_engine(text: &str) {
    support::guard::skip::<()>(None, text);
}
#[tokio::test]
async fn uses_the_engine() {
    with_fixture(|_| {}).await;
    let code = 3;
    if code == 3 {
        unreachable_engine("exit 3");
        return;
    }
    assert_eq!(code, 0);
}
#[test]
fn polls_and_searches() {
    let found = |needle: u32| -> bool {
        for n in 0..10 {
            if n == needle {
                return true;
            }
        }
        false
    };
    for _ in 0..3 {
        if found(2) {
            return;
        }
    }
    panic!("never found");
}
#[test]
fn asserts_or_fails() {
    answer(true).unwrap();
    if let Some(x) = std::env::var_os("X") {
        assert_eq!(x, "1");
    } else {
        panic!("X is unset");
    }
    let Some(y) = std::env::var_os("Y") else { panic!("Y is unset") };
    assert_eq!(y, "2");
}
fn answer(ok: bool) -> Result<(), String> {
    if ok {
        return Ok(());
    }
    Err("no".into())
}
"#;

#[test]
fn the_rule_accepts_skips_through_the_guard_and_exits_that_are_not_skips() {
    assert_eq!(
        findings_in(&[("tests/it/engine.rs", THROUGH_THE_GUARD)]),
        Vec::<String>::new()
    );
}
