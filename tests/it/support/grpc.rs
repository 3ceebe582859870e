//! A gRPC client that is not cozyboot's: Google's grpcio for Python (tests/it/support/
//! grpc_client.py), from the venv scripts/install-test-deps makes, with its stubs compiled at
//! test time by grpcio-tools from the matchbox double's .proto files — which carry matchbox
//! v0.11.0's package, service and method names.

use super::guard;
use super::images;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const PROTOS: [&str; 3] = [
    "matchbox/rpc/rpcpb/rpc.proto",
    "matchbox/server/serverpb/messages.proto",
    "matchbox/storage/storagepb/storage.proto",
];

/// The TLS files a call presents: the CA it trusts the server by, and the client's
/// certificate and key (none: a client without a certificate).
pub struct Credentials<'a> {
    pub ca: &'a Path,
    pub client: Option<(&'a Path, &'a Path)>,
}

pub struct Client {
    python: PathBuf,
    stubs: tempfile::TempDir,
}

/// What one call came back with.
#[derive(Debug)]
pub enum Reply {
    Ok(Value),
    /// A gRPC status code name (`UNAVAILABLE`, `NOT_FOUND`, ...) and its details.
    Failed(String, String),
}

impl Reply {
    #[track_caller]
    pub fn ok(self) -> Value {
        match self {
            Reply::Ok(v) => v,
            Reply::Failed(code, details) => panic!("the call failed: {code}: {details}"),
        }
    }
}

impl Client {
    /// The client, or `None` (through the guard) when the venv is missing.
    pub fn new() -> Option<Client> {
        let python = images::state_dir().join("grpc-venv/bin/python");
        if !python.is_file() {
            return guard::skip(
                None,
                &format!("{} is missing: run scripts/install-test-deps", python.display()),
            );
        }
        let stubs = tempfile::tempdir().unwrap();
        let proto = Path::new(REPO).join("testkit/matchbox-double/proto");
        let out = Command::new(&python)
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", proto.display()))
            .arg(format!("--python_out={}", stubs.path().display()))
            .arg(format!("--grpc_python_out={}", stubs.path().display()))
            .args(PROTOS)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "grpcio-tools could not compile the double's .proto files: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Client { python, stubs })
    }

    /// Calls `service.method` (e.g. `Groups`, `GroupList`) on `target` (`HOST:PORT`) with
    /// `request` (the request message as JSON); bounded by the script's 10 s deadline.
    pub fn call(&self, target: &str, credentials: &Credentials, service: &str, method: &str, request: Value) -> Reply {
        let dash = Path::new("-");
        let (cert, key) = credentials.client.unwrap_or((dash, dash));
        let out = Command::new("timeout")
            .arg("30")
            .arg(&self.python)
            .arg(Path::new(REPO).join("tests/it/support/grpc_client.py"))
            .arg(self.stubs.path())
            .arg(target)
            .args([credentials.ca, cert, key])
            .args([service, method, &request.to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let answer: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
            panic!(
                "grpc_client.py said no JSON (exit {:?}): {stdout}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        if answer["ok"] == true {
            Reply::Ok(answer["reply"].clone())
        } else {
            Reply::Failed(
                answer["code"].as_str().unwrap_or_default().to_string(),
                answer["details"].as_str().unwrap_or_default().to_string(),
            )
        }
    }
}
