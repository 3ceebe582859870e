//! Start-up, in the order of matchbox's cmd/matchbox/main.go.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::flags::{Flags, ParseError};
use crate::log::{self, Level};
use crate::{http, rpc, tls};

fn stat_err(path: &str) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(_) => None,
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            };
            Some(format!("stat {path}: {why}"))
        }
    }
}

fn is_dir(p: &str) -> bool {
    std::fs::metadata(p).map(|m| m.is_dir()).unwrap_or(false)
}

extern "C" fn on_signal(_: libc::c_int) {
    // A Go program exits on SIGTERM/SIGINT/SIGHUP; as PID 1 in a container the
    // re-raised signal is ignored and the Go runtime falls back to exit(2).
    unsafe { libc::_exit(2) }
}

fn install_signal_handlers() {
    unsafe {
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(s, on_signal as *const () as libc::sighandler_t);
        }
    }
}

fn listen(addr: &str) -> TcpListener {
    match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => "bind: address already in use".to_string(),
                std::io::ErrorKind::AddrNotAvailable => "bind: cannot assign requested address".to_string(),
                std::io::ErrorKind::PermissionDenied => "bind: permission denied".to_string(),
                _ => e.to_string(),
            };
            log::fatal(&format!("failed to start listening: listen tcp {addr}: {why}"))
        }
    }
}

/// Runs the server; returns an exit code only for the early exits (help, version,
/// usage errors); fatal start-up errors exit 1 from inside.
pub fn run(args: &[String]) -> i32 {
    install_signal_handlers();
    // Test-only: the `:crashing` test image sets this to fail right at start.
    if let Ok(msg) = std::env::var("MATCHBOX_DOUBLE_CRASH") {
        if !msg.is_empty() {
            log::fatal(&msg);
        }
    }
    let f = match Flags::parse(args) {
        Ok(f) => f,
        Err(ParseError::Help) => {
            eprint!("{}", Flags::usage());
            return 0;
        }
        Err(ParseError::Usage(m)) => {
            eprintln!("{m}");
            eprint!("{}", Flags::usage());
            return 2;
        }
        Err(ParseError::Env(m)) => log::fatal(&m),
    };
    // Test-only: an image standing in for a matchbox older than v0.11.0 sets this to the
    // version it reports, and then serves `/boot.ipxe` without `arch=` as those did.
    let old = std::env::var("MATCHBOX_DOUBLE_OLD").ok().filter(|v| !v.is_empty());
    if f.version {
        println!("{}", old.as_deref().unwrap_or(crate::VERSION));
        return 0;
    }
    if f.help {
        eprint!("{}", Flags::usage());
        return 0;
    }
    if !is_dir(&f.data_path) {
        log::fatal("A valid -data-path is required");
    }
    if !f.assets_path.is_empty() && !is_dir(&f.assets_path) {
        log::fatal(&format!(
            "Provide a valid -assets-path or '' to disable asset serving: {}",
            f.assets_path
        ));
    }
    if !f.rpc_address.is_empty() {
        if let Some(e) = stat_err(&f.cert_file) {
            log::fatal(&format!("Provide a valid TLS server certificate with -cert-file: {e}"));
        }
        if let Some(e) = stat_err(&f.key_file) {
            log::fatal(&format!("Provide a valid TLS server key with -key-file: {e}"));
        }
        if let Some(e) = stat_err(&f.ca_file) {
            log::fatal(&format!(
                "Provide a valid TLS certificate authority for authorizing client certificates: {e}"
            ));
        }
    }
    if f.web_ssl {
        if let Some(e) = stat_err(&f.web_cert_file) {
            log::fatal(&format!(
                "Provide a valid SSL server certificate with -web-cert-file: {e}"
            ));
        }
        if let Some(e) = stat_err(&f.web_key_file) {
            log::fatal(&format!("Provide a valid SSL server key with -web-key-file: {e}"));
        }
    }
    match Level::parse(&f.log_level) {
        Ok(l) => log::set_level(l),
        Err(e) => log::fatal(&format!("invalid log-level: {e}")),
    }
    if !f.key_ring_path.is_empty() {
        log::fatal("matchbox-double: -key-ring-path (config signing) is not implemented by the test double");
    }
    if f.compat_no_arch {
        log::warn("matchbox-double: -compat-no-arch is set: /boot.ipxe omits &arch= like matchbox < v0.11.0 (test-only fault seed)");
    }

    let data_path = PathBuf::from(&f.data_path);
    if !f.rpc_address.is_empty() {
        log::info(&format!("Starting matchbox gRPC server on {}", f.rpc_address));
        log::info(&format!("Using TLS server certificate: {}", f.cert_file));
        log::info(&format!("Using TLS server key: {}", f.key_file));
        log::info(&format!(
            "Using CA certificate: {} to authenticate client certificates",
            f.ca_file
        ));
        let lis = listen(&f.rpc_address);
        let tls = match tls::rpc_config(&f.cert_file, &f.key_file, &f.ca_file) {
            Ok(t) => t,
            Err(e) => log::fatal(&format!("Invalid TLS credentials: {e}")),
        };
        let dp = data_path.clone();
        std::thread::spawn(move || rpc::serve(lis, tls, dp));
    }

    let cfg = Arc::new(http::Config {
        data_path,
        assets_path: if f.assets_path.is_empty() {
            None
        } else {
            Some(Path::new(&f.assets_path).to_path_buf())
        },
        compat_no_arch: f.compat_no_arch || old.is_some(),
    });
    let tls = if f.web_ssl {
        log::info(&format!("Starting matchbox HTTPS server on {}", f.address));
        log::info(&format!("Using SSL server certificate: {}", f.web_cert_file));
        log::info(&format!("Using SSL server key: {}", f.web_key_file));
        match tls::web_config(&f.web_cert_file, &f.web_key_file) {
            Ok(t) => Some(t),
            Err(e) => log::fatal(&format!("failed to start listening: {e}")),
        }
    } else {
        log::info(&format!("Starting matchbox HTTP server on {}", f.address));
        None
    };
    let lis = listen(&f.address);
    http::serve(lis, cfg, tls);
    1
}
