//! Certificates for matchbox's gRPC API, which requires mutual TLS: matchbox exits at start
//! when `-rpc-address` is given without `/etc/matchbox/{ca.crt,server.crt,server.key}`.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The files matchbox reads (server side) and a client needs (`client.*`, `ca.crt`).
pub const FILES: &[&str] = &["ca.crt", "server.crt", "server.key", "client.crt", "client.key"];

pub fn present(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

/// Generates a CA, a server certificate for `server_ip` (and localhost) and a client
/// certificate, writing keys with mode 0600. The CA key is not kept: new certificates are
/// made by generating a new set.
pub fn generate(dir: &Path, server_ip: Ipv4Addr) -> Result<(), String> {
    let err = |e: rcgen::Error| format!("generating TLS certificates: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cozyboot matchbox CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |cn: &str, usage: ExtendedKeyUsagePurpose, sans: Vec<SanType>| -> Result<(String, String), String> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        params.subject_alt_names = sans;
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let server_sans = vec![
        SanType::IpAddress(server_ip.into()),
        SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
        SanType::DnsName("localhost".try_into().map_err(err)?),
        SanType::DnsName("matchbox".try_into().map_err(err)?),
    ];
    let (server_crt, server_key) = leaf("matchbox", ExtendedKeyUsagePurpose::ServerAuth, server_sans)?;
    let (client_crt, client_key) = leaf("cozyboot client", ExtendedKeyUsagePurpose::ClientAuth, vec![])?;

    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let write = |name: &str, content: &str, mode: u32| -> Result<(), String> {
        let path = dir.join(name);
        crate::render::atomic_write(&path, content.as_bytes())
            .and_then(|_| fs::set_permissions(&path, fs::Permissions::from_mode(mode)))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write("ca.crt", &ca_cert.pem(), 0o644)?;
    write("server.crt", &server_crt, 0o644)?;
    write("server.key", &server_key, 0o600)?;
    write("client.crt", &client_crt, 0o644)?;
    write("client.key", &client_key, 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), Ipv4Addr::new(10, 0, 0, 2)).unwrap();
        assert!(present(dir.path()));
        for key in ["server.key", "client.key"] {
            let mode = fs::metadata(dir.path().join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        let server = fs::read_to_string(dir.path().join("server.crt")).unwrap();
        assert!(server.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
