//! Certificates for matchbox's gRPC API, which requires mutual TLS: matchbox exits at start
//! when `-rpc-address` is given without `/etc/matchbox/{ca.crt,server.crt,server.key}`.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The files matchbox reads (server side) and a client needs (`client.*`, `ca.crt`).
pub const FILES: &[&str] = &["ca.crt", "server.crt", "server.key", "client.crt", "client.key"];

/// Private keys: readable by their owner only, from the moment the file exists.
const KEY_MODE: u32 = 0o600;
/// Certificates are public; matchbox may run as another user.
const CERT_MODE: u32 = 0o644;

/// What the server certificate is valid for: the addresses and names a client may dial
/// matchbox's gRPC API by. A client checks them, so they must follow the server address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerNames {
    pub ips: BTreeSet<IpAddr>,
    pub dns: BTreeSet<String>,
}

impl ServerNames {
    /// The names cozyboot's server certificate covers: the server address, and localhost and
    /// `matchbox` for clients on the host or in the container's network namespace.
    pub fn for_server(server_ip: Ipv4Addr) -> Self {
        ServerNames {
            ips: [IpAddr::V4(server_ip), IpAddr::V4(Ipv4Addr::LOCALHOST)].into(),
            dns: ["localhost".to_string(), "matchbox".to_string()].into(),
        }
    }

    fn sans(&self) -> Result<Vec<SanType>, rcgen::Error> {
        let ips = self.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip)));
        let dns = self.dns.iter().map(|d| Ok(SanType::DnsName(d.clone().try_into()?)));
        ips.chain(dns).collect()
    }
}

impl fmt::Display for ServerNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ips = self.ips.iter().map(IpAddr::to_string);
        let names: Vec<String> = ips.chain(self.dns.iter().cloned()).collect();
        f.write_str(&names.join(", "))
    }
}

pub fn present(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

/// The names the server certificate in `dir` covers; `None` when a file of the set is
/// missing or `server.crt` cannot be read as a certificate (either way: generate a new set).
pub fn covered(dir: &Path) -> Option<ServerNames> {
    if !present(dir) {
        return None;
    }
    let pem = fs::read(dir.join("server.crt")).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let mut names = ServerNames::default();
    if let Some(san) = cert.subject_alternative_name().ok()? {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names.ips.insert(IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?)),
                    16 => names.ips.insert(IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?)),
                    _ => return None,
                },
                x509_parser::extensions::GeneralName::DNSName(dns) => names.dns.insert(dns.to_string()),
                _ => false,
            };
        }
    }
    Some(names)
}

/// Generates a CA, a server certificate for `names` and a client certificate. Keys are
/// created 0600 (never readable by others, not even for a moment). The CA key is not kept:
/// new certificates are made by generating a new set.
pub fn generate(dir: &Path, names: &ServerNames) -> Result<(), String> {
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
    let server_sans = names.sans().map_err(err)?;
    let (server_crt, server_key) = leaf("matchbox", ExtendedKeyUsagePurpose::ServerAuth, server_sans)?;
    let (client_crt, client_key) = leaf("cozyboot client", ExtendedKeyUsagePurpose::ClientAuth, vec![])?;

    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let write = |name: &str, content: &str, mode: u32| -> Result<(), String> {
        let path = dir.join(name);
        write_with_mode(&path, content.as_bytes(), mode).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    // Keys before certificates, server.crt last: `covered` reads server.crt, so a run cut
    // short leaves a set that is either complete or regenerated next time.
    write("server.key", &server_key, KEY_MODE)?;
    write("client.key", &client_key, KEY_MODE)?;
    write("ca.crt", &ca_cert.pem(), CERT_MODE)?;
    write("client.crt", &client_crt, CERT_MODE)?;
    write("server.crt", &server_crt, CERT_MODE)?;
    Ok(())
}

/// Writes `content` to `path` atomically, the file having `mode` before any byte is in it.
fn write_with_mode(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp = create_temp_beside(path, mode)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// An empty temporary file in `path`'s folder, created with `mode` (then set to it exactly,
/// whatever the umask), so what is written into it is never more readable than `mode`.
fn create_temp_beside(path: &Path, mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".tls-")
        .permissions(fs::Permissions::from_mode(mode & KEY_MODE))
        .tempfile_in(dir)?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_every_file_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let names = ServerNames::for_server(Ipv4Addr::new(10, 0, 0, 2));
        generate(dir.path(), &names).unwrap();
        assert!(present(dir.path()));
        for key in ["server.key", "client.key"] {
            assert_eq!(mode(&dir.path().join(key)), 0o600, "{key}");
        }
        for cert in ["ca.crt", "server.crt", "client.crt"] {
            assert_eq!(mode(&dir.path().join(cert)), 0o644, "{cert}");
        }
        let server = fs::read_to_string(dir.path().join("server.crt")).unwrap();
        assert!(server.starts_with("-----BEGIN CERTIFICATE-----"));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !FILES.contains(&n.as_str()))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_key_file_is_private_before_anything_is_written_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = create_temp_beside(&dir.path().join("server.key"), KEY_MODE).unwrap();
        assert_eq!(fs::metadata(tmp.path()).unwrap().len(), 0, "still empty");
        assert_eq!(mode(tmp.path()), 0o600);
        // Certificates are public, and get their mode the same way (not from the umask).
        let tmp = create_temp_beside(&dir.path().join("ca.crt"), CERT_MODE).unwrap();
        assert_eq!(mode(tmp.path()), 0o644);
    }

    #[test]
    fn replacing_a_key_never_makes_it_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("server.key");
        write_with_mode(&key, b"old", KEY_MODE).unwrap();
        write_with_mode(&key, b"new", KEY_MODE).unwrap();
        assert_eq!((fs::read(&key).unwrap(), mode(&key)), (b"new".to_vec(), 0o600));
    }

    #[test]
    fn reads_back_the_names_the_server_certificate_covers() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(covered(dir.path()), None, "nothing generated yet");
        let names = ServerNames::for_server(Ipv4Addr::new(10, 0, 0, 2));
        generate(dir.path(), &names).unwrap();
        assert_eq!(covered(dir.path()), Some(names));
        assert_ne!(
            covered(dir.path()),
            Some(ServerNames::for_server(Ipv4Addr::new(10, 0, 0, 3)))
        );
        fs::write(dir.path().join("server.crt"), "not a certificate").unwrap();
        assert_eq!(covered(dir.path()), None);
    }
}
