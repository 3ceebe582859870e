//! Child processes with their output collected, and the matchbox double's binary.

use super::*;

/// A child whose stderr (or stdout) is collected line by line.
pub(super) struct Logged {
    pub(super) child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Logged {
    pub(super) fn spawn(mut command: Command, what: &str) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let collect = |r: Box<dyn Read + Send>, log: Arc<Mutex<String>>| {
            thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            })
        };
        let out = collect(Box::new(stdout), Arc::clone(&log));
        let err = collect(Box::new(stderr), Arc::clone(&log));
        let reader = Some(thread::spawn(move || {
            let _ = out.join();
            let _ = err.join();
        }));
        Logged { child, log, reader }
    }

    pub(super) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until `needle` is in the log; false at the timeout or when the
    /// process exited without logging it.
    pub(super) fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                thread::sleep(Duration::from_millis(100)); // the last lines
                return self.log().contains(needle);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// `target/<profile>`, from this test binary's path (`target/<profile>/deps/<name>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Where each boot's full logs go: `COZYBOOT_FIRMWARE_LOGS`, else
/// `target/firmware-boot-logs`, one folder per boot.
pub fn logs_dir() -> PathBuf {
    std::env::var_os("COZYBOOT_FIRMWARE_LOGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().parent().expect("target dir").join("firmware-boot-logs"))
}

/// The matchbox double's binary, built once per test process with `cargo build -p
/// matchbox-double` into this build's target dir (or `COZYBOOT_MATCHBOX_DOUBLE=<path>`).
pub fn matchbox_double() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("COZYBOOT_MATCHBOX_DOUBLE") {
            return PathBuf::from(p);
        }
        let profile_dir = profile_dir();
        let target_dir = profile_dir.parent().expect("target dir");
        let bin = profile_dir.join("matchbox-double");
        // `cargo test --workspace` has built it already (the double's own tests need it); a
        // nested cargo build would only re-resolve features and maybe relink.
        if newer_than_sources(&bin) {
            return bin;
        }
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let t0 = Instant::now();
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-q", "-p", "matchbox-double", "--bin", "matchbox-double"])
            .env("CARGO_TARGET_DIR", target_dir);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("running cargo build -p matchbox-double");
        assert!(status.success(), "cargo build -p matchbox-double failed");
        println!("built matchbox-double in {:.1?}", t0.elapsed());
        bin
    })
}

/// Whether `bin` exists and is newer than the double's sources and Cargo.lock.
fn newer_than_sources(bin: &Path) -> bool {
    fn newest(p: &Path) -> std::time::SystemTime {
        let Ok(meta) = fs::metadata(p) else {
            return std::time::SystemTime::UNIX_EPOCH;
        };
        let mut t = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        if meta.is_dir() {
            for e in fs::read_dir(p).into_iter().flatten().flatten() {
                t = t.max(newest(&e.path()));
            }
        }
        t
    }
    let Ok(built) = fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [root.join("testkit/matchbox-double"), root.join("Cargo.lock")];
    sources.iter().all(|s| newest(s) <= built)
}
