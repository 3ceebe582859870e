//! The `-rpc-address` listener. Real matchbox serves gRPC over mutual TLS there; the
//! double does the same TLS part (server certificate from -cert-file/-key-file, client
//! certificates required and verified against -ca-file) and then speaks a tiny line
//! protocol instead of gRPC:
//!
//! | client sends | server answers |
//! |---|---|
//! | `PING` | `PONG` |
//! | `VERSION` | `v0.11.0` |
//! | `GROUPS` | JSON array of group ids |
//! | `PROFILES` | JSON array of profile ids |
//! | `QUIT` | closes |
//! | anything else | `ERR unknown command` |

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::log;
use crate::store::Store;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no certificates found"));
    }
    Ok(certs)
}

fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{path}: {e}"))
}

/// TLS config requiring client certificates signed by `ca_file`.
pub fn mtls_config(cert_file: &str, key_file: &str, ca_file: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca_file)? {
        roots.add(c).map_err(|e| format!("{ca_file}: {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert_file)?, load_key(key_file)?)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(cfg))
}

/// TLS config without client authentication (-web-ssl).
pub fn server_config(cert_file: &str, key_file: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert_file)?, load_key(key_file)?)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(cfg))
}

fn ids(store_root: &PathBuf, dir: &str) -> Vec<String> {
    let store = Store::new(store_root);
    match dir {
        "groups" => store
            .group_list()
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.id)
            .collect(),
        _ => {
            let mut names: Vec<String> = std::fs::read_dir(store_root.join("profiles"))
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
                .into_iter()
                .filter_map(|n| {
                    let stem = n.rsplit_once('.').map(|(s, _)| s.to_string()).unwrap_or(n);
                    store.profile_get(&stem).ok().map(|p| p.id)
                })
                .collect()
        }
    }
}

pub fn serve(listener: TcpListener, cfg: Arc<rustls::ServerConfig>, data_path: PathBuf) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let cfg = cfg.clone();
        let data_path = data_path.clone();
        std::thread::spawn(move || {
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(60)));
            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            while tls.conn.is_handshaking() {
                if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                    log::warn(&format!(
                        "grpc: Server.Serve failed to complete security handshake from {peer:?}: {e}"
                    ));
                    return;
                }
            }
            log::info(&format!("RPC connection from {peer} (client certificate verified)"));
            let mut reader = BufReader::new(tls);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let cmd = line.trim().to_ascii_uppercase();
                log::info(&format!("RPC {cmd}"));
                let answer = match cmd.as_str() {
                    "PING" => "PONG".to_string(),
                    "VERSION" => crate::VERSION.to_string(),
                    "GROUPS" => serde_json::to_string(&ids(&data_path, "groups")).unwrap(),
                    "PROFILES" => serde_json::to_string(&ids(&data_path, "profiles")).unwrap(),
                    "QUIT" => {
                        let w = reader.get_mut();
                        w.conn.send_close_notify();
                        let _ = w.flush();
                        return;
                    }
                    _ => "ERR unknown command".to_string(),
                };
                let w = reader.get_mut();
                if w.write_all(format!("{answer}\n").as_bytes())
                    .and_then(|_| w.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}
