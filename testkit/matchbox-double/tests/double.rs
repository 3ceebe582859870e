//! Black-box tests of the matchbox-double binary over loopback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_matchbox-double");

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("mbdouble-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, rel: &str, data: impl AsRef<[u8]>) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    fn path(&self, rel: &str) -> String {
        self.0.join(rel).to_string_lossy().into_owned()
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    port: u16,
    stderr: PathBuf,
}
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The log once every line in `wanted` is in it, or as it is after 5 s. The server writes
    /// some lines after the client already has its answer (a refused TLS handshake is logged
    /// once the server's side of it ends), so reading at once races the server.
    fn log_with(&self, wanted: &[&str]) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if wanted.iter().all(|w| log.contains(w)) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn start(dir: &TempDir, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let stderr = dir.0.join(format!("stderr-{port}.log"));
    let mut cmd = Command::new(BIN);
    cmd.arg(format!("-address=127.0.0.1:{port}"))
        .arg("-data-path")
        .arg(dir.path("data"))
        .arg(format!("-assets-path={}", dir.path("assets")))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("server exited {st}: {}", std::fs::read_to_string(&stderr).unwrap());
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, port, stderr }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}
impl Resp {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn request(port: u16, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Resp { status, headers, body }
}

fn get(port: u16, target: &str) -> Resp {
    request(port, "GET", target, &[])
}

fn fixture() -> TempDir {
    let d = TempDir::new("fx");
    d.write("assets/.keep", "");
    d.write(
        "data/profiles/default.json",
        r#"{"id":"default","boot":{"kernel":"/assets/default/vmlinuz","initrd":["/assets/default/initramfs.xz"],"args":["talos.platform=metal"]}}"#,
    );
    d.write(
        "data/profiles/node1.json",
        r#"{"id":"node1","name":"Node 1","generic_id":"node1.yaml","boot":{"kernel":"/assets/arm64/vmlinuz","initrd":["/assets/arm64/initramfs.xz","/assets/extra.img"],"args":["initrd=initramfs.xz","talos.platform=metal","slab_nomerge","pti=on","talos.config=http://x/generic?mac=${mac:hexhyp}"]}}"#,
    );
    d.write(
        "data/profiles/node1-amd64.json",
        r#"{"id":"node1-amd64","boot":{"kernel":"/assets/amd64/vmlinuz","initrd":["/assets/amd64/initramfs.xz"],"args":[]}}"#,
    );
    d.write(
        "data/profiles/noboot.json",
        r#"{"id":"noboot","generic_id":"broken.yaml"}"#,
    );
    d.write(
        "data/groups/default.json",
        r#"{"id":"default","profile":"default","metadata":{"cluster":"c1"}}"#,
    );
    d.write(
        "data/groups/node1.json",
        r#"{"id":"node1","profile":"node1","selector":{"mac":"52-54-00-AA-BB-01"},"metadata":{"hostname":"node1","port":6443}}"#,
    );
    d.write(
        "data/groups/node1-amd64.json",
        r#"{"id":"node1-amd64","profile":"node1-amd64","selector":{"mac":"52:54:00:aa:bb:01","arch":"x86_64"}}"#,
    );
    d.write(
        "data/groups/noboot.json",
        r#"{"id":"noboot","profile":"noboot","selector":{"role":"noboot"}}"#,
    );
    d.write(
        "data/groups/ghost.json",
        r#"{"id":"ghost","profile":"missing","selector":{"role":"ghost"}}"#,
    );
    d.write(
        "data/groups/broken.json",
        r#"{"id":"broken","profile":"default","selector":{"mac":"not-a-mac"}}"#,
    );
    d.write("data/generic/node1.yaml", "version: v1alpha1\nmachine:\n  network:\n    hostname: {{.hostname}}\n  mac: {{.request.query.mac}}\n  literal: {{\"{{\"}} x }}\n");
    d.write("data/generic/broken.yaml", "machine:\n  certSANs: [\"{{ weird\"]\n");
    d
}

#[test]
fn home_and_boot_script() {
    let d = fixture();
    let s = start(&d, &[], &[]);
    let r = get(s.port, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "matchbox\n");
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    let want = "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n";
    assert_eq!(get(s.port, "/boot.ipxe").text(), want);
    assert_eq!(get(s.port, "/boot.ipxe.0").text(), want);
    assert_eq!(get(s.port, "/nope").status, 404);
    assert_eq!(get(s.port, "/nope").text(), "404 page not found\n");
    let log = s.log();
    assert!(log.contains("Starting matchbox HTTP server on 127.0.0.1:"), "{log}");
    assert!(log.contains("msg=\"HTTP GET /boot.ipxe\""), "{log}");
    assert!(log.contains("msg=\"HTTP GET /nope\""), "{log}");
}

#[test]
fn compat_no_arch_fault_seed() {
    let d = fixture();
    let s = start(&d, &["-compat-no-arch"], &[]);
    let t = get(s.port, "/boot.ipxe").text();
    assert_eq!(
        t,
        "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}\n"
    );
}

#[test]
fn ipxe_selection_rules() {
    let d = fixture();
    let s = start(&d, &[], &[]);
    // most selectors wins; mac normalised from the hyphen form iPXE sends
    let r = get(s.port, "/ipxe?mac=52-54-00-aa-bb-01&arch=x86_64");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "#!ipxe\nkernel /assets/amd64/vmlinuz\ninitrd /assets/amd64/initramfs.xz\nboot\n"
    );
    let r = get(s.port, "/ipxe?mac=52-54-00-AA-BB-01&arch=arm64&uuid=&hostname=");
    assert_eq!(
        r.text(),
        "#!ipxe\nkernel /assets/arm64/vmlinuz initrd=initramfs.xz talos.platform=metal slab_nomerge pti=on talos.config=http://x/generic?mac=${mac:hexhyp}\ninitrd /assets/arm64/initramfs.xz\ninitrd /assets/extra.img\nboot\n"
    );
    // without arch the 2-selector group cannot match
    assert!(get(s.port, "/ipxe?mac=52:54:00:aa:bb:01")
        .text()
        .contains("/assets/arm64/vmlinuz"));
    // default group (empty selector) catches the rest
    assert!(get(s.port, "/ipxe?mac=52:54:00:00:00:09")
        .text()
        .contains("/assets/default/vmlinuz"));
    assert!(get(s.port, "/ipxe").text().contains("/assets/default/vmlinuz"));
    // an unparseable mac label is dropped, not matched literally
    assert!(get(s.port, "/ipxe?mac=zz").text().contains("/assets/default/vmlinuz"));
    // group whose profile has no boot, and group whose profile file is missing
    assert_eq!(get(s.port, "/ipxe?role=noboot").status, 404);
    assert_eq!(get(s.port, "/ipxe?role=ghost").status, 404);
    // remove the default group: no match -> 404; data re-read per request
    std::fs::remove_file(d.0.join("data/groups/default.json")).unwrap();
    let r = get(s.port, "/ipxe?mac=52:54:00:00:00:09");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "404 page not found\n");
    assert!(s.log().contains("No matching profile"));
}

#[test]
fn generic_templates() {
    let d = fixture();
    let s = start(&d, &[], &[]);
    let r = get(s.port, "/generic?mac=52-54-00-aa-bb-01");
    assert_eq!(r.status, 200, "{}", s.log());
    assert_eq!(
        r.text(),
        "version: v1alpha1\nmachine:\n  network:\n    hostname: node1\n  mac: 52:54:00:aa:bb:01\n  literal: {{ x }}\n"
    );
    assert_eq!(r.header("Content-Length"), Some(r.body.len().to_string().as_str()));
    // ranged generic (http.ServeContent)
    let r = request(
        s.port,
        "GET",
        "/generic?mac=52-54-00-aa-bb-01",
        &[("Range", "bytes=0-6")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "version");
    // broken template -> 404 like matchbox (it answers NotFound on any template error)
    assert_eq!(get(s.port, "/generic?role=noboot").status, 404);
    assert!(s.log().contains("error parsing template"), "{}", s.log());
    // default profile has no generic_id -> 404
    assert_eq!(get(s.port, "/generic?mac=52:54:00:00:00:09").status, 404);
    // plain file as-is (YAML with braces that are not actions stays verbatim)
    d.write("data/generic/node1.yaml", "a: {b: c}\n# }} {\n");
    assert_eq!(
        get(s.port, "/generic?mac=52:54:00:aa:bb:01").text(),
        "a: {b: c}\n# }} {\n"
    );
    // missing key -> 404 (missingkey=error)
    d.write("data/generic/node1.yaml", "x: {{.nope}}\n");
    assert_eq!(get(s.port, "/generic?mac=52:54:00:aa:bb:01").status, 404);
    // no group
    std::fs::remove_file(d.0.join("data/groups/default.json")).unwrap();
    assert_eq!(get(s.port, "/generic?foo=bar").status, 404);
    // metadata endpoint
    let m = get(s.port, "/metadata?mac=52:54:00:aa:bb:01").text();
    assert!(
        m.contains("HOSTNAME=node1\n") && m.contains("PORT=6443\n") && m.contains("MAC=52:54:00:aa:bb:01\n"),
        "{m}"
    );
}

#[test]
fn ignition_is_not_for_talos() {
    let d = fixture();
    d.write("data/profiles/ign.json", r#"{"id":"ign","ignition_id":"talos.yaml"}"#);
    d.write(
        "data/groups/ign.json",
        r#"{"id":"ign","profile":"ign","selector":{"role":"ign"}}"#,
    );
    d.write("data/ignition/talos.yaml", "version: v1alpha1\nmachine: {}\n");
    let s = start(&d, &[], &[]);
    assert_eq!(get(s.port, "/ignition?role=ign").status, 404);
}

#[test]
fn assets_ranges_and_traversal() {
    let d = fixture();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    d.write("assets/arm64/vmlinuz", &data);
    d.write("outside.txt", "secret");
    let s = start(&d, &[], &[]);
    let r = get(s.port, "/assets/arm64/vmlinuz");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("Content-Length"), Some("100000"));
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
    let r = request(s.port, "HEAD", "/assets/arm64/vmlinuz", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("100000"));
    assert!(r.body.is_empty());
    let r = request(s.port, "GET", "/assets/arm64/vmlinuz", &[("Range", "bytes=10-19")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("Content-Range"), Some("bytes 10-19/100000"));
    assert_eq!(r.header("Content-Length"), Some("10"));
    assert_eq!(r.body, &data[10..20]);
    let r = request(s.port, "GET", "/assets/arm64/vmlinuz", &[("Range", "bytes=-5")]);
    assert_eq!(r.body, &data[99_995..]);
    let r = request(s.port, "GET", "/assets/arm64/vmlinuz", &[("Range", "bytes=200000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */100000"));
    // listings
    let r = get(s.port, "/assets/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<a href=\"arm64/\">arm64/</a>"), "{}", r.text());
    assert_eq!(get(s.port, "/assets/arm64").status, 301);
    assert_eq!(get(s.port, "/assets/missing").status, 404);
    // traversal never reaches outside.txt
    for t in [
        "/assets/../outside.txt",
        "/assets/%2e%2e/outside.txt",
        "/assets/arm64/../../outside.txt",
        "/assets/..%2foutside.txt",
    ] {
        let r = get(s.port, t);
        assert!(!r.text().contains("secret"), "{t} leaked");
        assert_ne!(r.status, 200, "{t}");
    }
}

fn run_fail(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn startup_refusals() {
    let d = fixture();
    let data = d.path("data");
    let assets = d.path("assets");
    let o = run_fail(&["-data-path=/nonexistent/x", &format!("-assets-path={assets}")], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("level=fatal msg=\"A valid -data-path is required\""));
    let o = run_fail(&["-data-path", &data, "-assets-path", "/nonexistent/a"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("Provide a valid -assets-path or '' to disable asset serving: /nonexistent/a"));
    // default paths (/var/lib/matchbox) do not exist on a test host
    if !Path::new("/var/lib/matchbox").exists() {
        assert_eq!(run_fail(&[], &[]).status.code(), Some(1));
    }
    // -rpc-address without the TLS files
    let etc = TempDir::new("etc");
    let o = run_fail(
        &[
            &format!("-data-path={data}"),
            &format!("-assets-path={assets}"),
            "-rpc-address=127.0.0.1:0",
        ],
        &[("MATCHBOX_DOUBLE_ETC_DIR", &etc.path(""))],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Provide a valid TLS server certificate with -cert-file: stat "),
        "{err}"
    );
    assert!(err.contains("server.crt: no such file or directory"), "{err}");
    // bad log level, unknown flag
    let o = run_fail(
        &[
            &format!("-data-path={data}"),
            &format!("-assets-path={assets}"),
            "-log-level=loud",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid log-level"));
    let o = run_fail(&["-bogus"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("flag provided but not defined: -bogus"));
    let o = run_fail(&["-version"], &[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "v0.11.0\n");
    // assets disabled with '' is accepted
    let s = start(&d, &["-assets-path="], &[]);
    assert_eq!(get(s.port, "/assets/").status, 404);
}

// ------------------------------------------------------------------ rpc (mTLS)

struct Pki {
    ca_pem: String,
    server_pem: String,
    server_key: String,
    client_pem: String,
    client_key: String,
    rogue_pem: String,
    rogue_key: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mk_ca = || {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        (cert, Issuer::new(p, key))
    };
    let (ca, issuer) = mk_ca();
    let (_, rogue_issuer) = mk_ca();
    let leaf = |names: Vec<String>, iss: &Issuer<'_, KeyPair>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, iss).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], &issuer);
    let (client_pem, client_key) = leaf(vec!["client".into()], &issuer);
    let (rogue_pem, rogue_key) = leaf(vec!["client".into()], &rogue_issuer);
    Pki {
        ca_pem: ca.pem(),
        server_pem,
        server_key,
        client_pem,
        client_key,
        rogue_pem,
        rogue_key,
    }
}

/// A rustls client trusting `ca`, offering ALPN h2 like a gRPC client, limited to `suites`
/// (all of ring's when empty), with `cert` as its identity.
fn tls_client(ca: &str, cert: Option<(&str, &str)>, suites: &[rustls::CipherSuite]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut provider = rustls::crypto::ring::default_provider();
    if !suites.is_empty() {
        provider.cipher_suites.retain(|s| suites.contains(&s.suite()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some((c, k)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(c.as_bytes())
                    .map(|x| x.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

/// A TLS handshake only; the negotiated ALPN protocol when it completes.
fn handshake(port: u16, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Option<Vec<u8>>> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(conn.alpn_protocol().map(<[u8]>::to_vec))
}

/// gRPC calls the way a matchbox client makes them: tonic's channel over TLS, trusting `ca`,
/// with `cert` as the client identity. Bounded: 10 s to connect, 10 s per call.
struct Grpc {
    runtime: tokio::runtime::Runtime,
    channel: Result<tonic::transport::Channel, String>,
}

impl Grpc {
    fn new(port: u16, ca: &str, cert: Option<(&str, &str)>) -> Grpc {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        if let Some((c, k)) = cert {
            tls = tls.identity(Identity::from_pem(c, k));
        }
        let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(10));
        let channel = runtime.block_on(endpoint.connect()).map_err(|e| format!("{e:?}"));
        Grpc { runtime, channel }
    }

    fn groups(&self) -> Result<Vec<String>, String> {
        use matchbox_double::rpc::pb::{rpcpb::groups_client::GroupsClient, serverpb::GroupListRequest};
        let mut client = GroupsClient::new(self.channel.clone()?);
        let reply = self
            .runtime
            .block_on(client.group_list(GroupListRequest {}))
            .map_err(|e| e.to_string())?;
        Ok(reply.into_inner().groups.into_iter().map(|g| g.id).collect())
    }
}

fn rpc_site() -> (TempDir, Pki, TempDir, Server, u16) {
    let d = fixture();
    let p = pki();
    let etc = TempDir::new("etc");
    etc.write("ca.crt", &p.ca_pem);
    etc.write("server.crt", &p.server_pem);
    etc.write("server.key", &p.server_key);
    let rpc_port = free_port();
    let rpc = format!("-rpc-address=127.0.0.1:{rpc_port}");
    let s = start(&d, &[&rpc], &[("MATCHBOX_DOUBLE_ETC_DIR", &etc.path(""))]);
    assert!(s.log().contains("Starting matchbox gRPC server on 127.0.0.1:"));
    (d, p, etc, s, rpc_port)
}

#[test]
fn rpc_serves_matchbox_api_to_clients_with_a_certificate_from_the_ca() {
    use matchbox_double::rpc::pb::rpcpb::{
        groups_client::GroupsClient, profiles_client::ProfilesClient, select_client::SelectClient,
    };
    use matchbox_double::rpc::pb::serverpb as msg;
    let (_d, p, _etc, s, rpc_port) = rpc_site();
    let grpc = Grpc::new(rpc_port, &p.ca_pem, Some((&p.client_pem, &p.client_key)));
    // by file name, "broken" (an invalid MAC selector) skipped as matchbox's GroupList does
    assert_eq!(
        grpc.groups().unwrap(),
        ["default", "ghost", "noboot", "node1-amd64", "node1"]
    );
    let channel = grpc.channel.clone().unwrap();
    let rt = &grpc.runtime;

    let mut groups = GroupsClient::new(channel.clone());
    let node1 = rt
        .block_on(groups.group_get(msg::GroupGetRequest { id: "node1".into() }))
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(node1.profile, "node1");
    assert_eq!(
        node1.selector["mac"], "52:54:00:aa:bb:01",
        "normalised as matchbox stores it"
    );
    assert_eq!(
        String::from_utf8(node1.metadata).unwrap(),
        r#"{"hostname":"node1","port":6443}"#
    );
    let missing = rt
        .block_on(groups.group_get(msg::GroupGetRequest { id: "nope".into() }))
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unknown, "{missing}");
    assert!(
        missing
            .message()
            .contains("groups/nope.json: no such file or directory"),
        "{missing}"
    );

    let mut profiles = ProfilesClient::new(channel.clone());
    let ids: Vec<String> = rt
        .block_on(profiles.profile_list(msg::ProfileListRequest {}))
        .unwrap()
        .into_inner()
        .profiles
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["default", "noboot", "node1-amd64", "node1"]);
    let node1 = rt
        .block_on(profiles.profile_get(msg::ProfileGetRequest { id: "node1".into() }))
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(
        (node1.name.as_str(), node1.generic_id.as_str()),
        ("Node 1", "node1.yaml")
    );
    assert_eq!(
        node1.boot.unwrap().initrd,
        ["/assets/arm64/initramfs.xz", "/assets/extra.img"]
    );

    let mut select = SelectClient::new(channel);
    let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let chosen = |pairs: &[(&str, &str)]| {
        let req = msg::SelectProfileRequest { labels: labels(pairs) };
        rt.block_on(select.clone().select_profile(req))
            .map(|r| r.into_inner().profile.unwrap().id)
    };
    assert_eq!(chosen(&[("mac", "52:54:00:aa:bb:01")]).unwrap(), "node1");
    assert_eq!(
        chosen(&[("mac", "52:54:00:aa:bb:01"), ("arch", "x86_64")]).unwrap(),
        "node1-amd64"
    );
    assert_eq!(
        chosen(&[("mac", "52-54-00-aa-bb-01")]).unwrap(),
        "default",
        "labels are not normalised"
    );
    let ghost = chosen(&[("role", "ghost")]).unwrap_err();
    assert_eq!(
        (ghost.code(), ghost.message()),
        (tonic::Code::NotFound, "matchbox: No matching Profile")
    );
    let group = rt
        .block_on(select.select_group(msg::SelectGroupRequest {
            labels: labels(&[("role", "ghost")]),
        }))
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(group.id, "ghost");
    // HTTP keeps working
    assert_eq!(get(s.port, "/").text(), "matchbox\n");
}

#[test]
fn rpc_refuses_clients_without_a_certificate_from_the_ca() {
    let (_d, p, _etc, s, rpc_port) = rpc_site();
    let no_cert = Grpc::new(rpc_port, &p.ca_pem, None).groups();
    assert!(no_cert.is_err(), "{no_cert:?}");
    let rogue = Grpc::new(rpc_port, &p.ca_pem, Some((&p.rogue_pem, &p.rogue_key))).groups();
    assert!(rogue.is_err(), "{rogue:?}");
    // the server refused both in the TLS handshake, before any call
    let log = s.log_with(&["peer sent no certificates", "invalid peer certificate"]);
    assert!(
        log.contains("security handshake") && log.contains("peer sent no certificates"),
        "{log}"
    );
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert!(Grpc::new(rpc_port, &p.ca_pem, Some((&p.client_pem, &p.client_key)))
        .groups()
        .is_ok());
}

#[test]
fn rpc_tls_follows_matchbox_tlsutil() {
    use rustls::CipherSuite::*;
    let (_d, p, _etc, _s, rpc_port) = rpc_site();
    let client = Some((p.client_pem.as_str(), p.client_key.as_str()));
    // TLS 1.2 with one of tlsutil's four suites, and ALPN h2 as grpc-go's credentials add it
    let gcm = tls_client(&p.ca_pem, client, &[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]);
    assert_eq!(handshake(rpc_port, gcm).unwrap().as_deref(), Some(&b"h2"[..]));
    // a TLS 1.2 suite Go would allow by default but tlsutil leaves out
    let chacha = tls_client(&p.ca_pem, client, &[TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]);
    assert!(handshake(rpc_port, chacha).is_err());
    // TLS 1.3 keeps its suites
    let tls13 = tls_client(&p.ca_pem, client, &[TLS13_CHACHA20_POLY1305_SHA256]);
    assert!(handshake(rpc_port, tls13).is_ok());
}

#[test]
fn keep_alive_serves_several_requests() {
    let d = fixture();
    let s = start(&d, &[], &[]);
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /boot.ipxe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    c.read_to_string(&mut all).unwrap();
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 2, "{all}");
    assert!(all.contains("matchbox\n") && all.contains("chain ipxe?"));
}

#[test]
fn sigterm_exits_promptly() {
    let d = fixture();
    let mut s = start(&d, &[], &[]);
    let pid = s.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let t = Instant::now();
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert_eq!(st.code(), Some(2));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
}
