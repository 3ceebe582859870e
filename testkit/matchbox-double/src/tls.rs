//! TLS settings of matchbox v0.11.0's two TLS listeners, in rustls.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CipherSuite, SupportedCipherSuite};

/// The TLS 1.2 suites matchbox's gRPC listener allows (matchbox v0.11.0,
/// matchbox/tlsutil/info.go, `TLSInfo.ServerConfig`). Go applies the list to TLS 1.2 only;
/// TLS 1.3 keeps its own suites.
const RPC_TLS12_SUITES: [CipherSuite; 4] = [
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
];

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn rpc_provider() -> CryptoProvider {
    let mut p = provider();
    p.cipher_suites.retain(|s| match s {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(_) => RPC_TLS12_SUITES.contains(&s.suite()),
    });
    p
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

/// The gRPC listener's TLS: as matchbox v0.11.0's `TLSInfo.ServerConfig`
/// (matchbox/tlsutil/info.go) — TLS 1.2 at least (rustls has nothing older), a client
/// certificate required and verified against `ca_file` (`tls.RequireAndVerifyClientCert`,
/// which also wants the clientAuth key usage, as webpki does), the TLS 1.2 suites above — and
/// ALPN `h2`, which grpc-go's `credentials.NewTLS` adds (grpc v1.62.1, credentials/tls.go)
/// and gRPC clients expect.
pub fn rpc_config(cert_file: &str, key_file: &str, ca_file: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca_file)? {
        roots.add(c).map_err(|e| format!("{ca_file}: {e}"))?;
    }
    let provider = Arc::new(rpc_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert_file)?, load_key(key_file)?)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// TLS config without client authentication (-web-ssl): Go's defaults.
pub fn web_config(cert_file: &str, key_file: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert_file)?, load_key(key_file)?)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(cfg))
}
