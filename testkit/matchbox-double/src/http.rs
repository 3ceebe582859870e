//! A small HTTP/1.1 server (thread per connection, keep-alive) and matchbox's routes
//! (matchbox/http/server.go), answering the way Go's net/http does.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::gotemplate::{self, V};
use crate::labels::{labels_from_query, path_unescape};
use crate::log::{self, Level};
use crate::store::{clean_path, Group, Store};

pub const IPXE_BOOTSTRAP: &str = "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n";
/// What matchbox < v0.11.0 served (the `-compat-no-arch` fault seed).
pub const IPXE_BOOTSTRAP_NO_ARCH: &str =
    "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}\n";

#[derive(Clone)]
pub struct Config {
    pub data_path: PathBuf,
    /// None when asset serving is disabled (`-assets-path=''`)
    pub assets_path: Option<PathBuf>,
    pub compat_no_arch: bool,
}

pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

pub struct Request {
    pub method: String,
    pub target: String,
    pub path: String,
    pub raw_query: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    File(File, u64, u64), // file, offset, length
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Response {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn bytes(mut self, b: impl Into<Vec<u8>>) -> Response {
        self.body = Body::Bytes(b.into());
        self
    }
    /// A handler's plain write: Go sniffs the Content-Type.
    fn written(body: impl Into<Vec<u8>>) -> Response {
        let b = body.into();
        let ct = sniff(&b);
        Response::new(200).header("Content-Type", ct).bytes(b)
    }
    /// http.Error
    pub fn error(status: u16, msg: &str) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .header("X-Content-Type-Options", "nosniff")
            .bytes(format!("{msg}\n"))
    }
    pub fn not_found() -> Response {
        Response::error(404, "404 page not found")
    }
    fn redirect(req: &Request, location: &str) -> Response {
        let mut r = Response::new(301).header("Location", location);
        if req.method == "GET" || req.method == "HEAD" {
            r = r.header("Content-Type", "text/html; charset=utf-8").bytes(format!(
                "<a href=\"{}\">Moved Permanently</a>.\n\n",
                html_escape(location)
            ));
        }
        r
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Requested Range Not Satisfiable",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

fn url_escape_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A simplified http.DetectContentType.
pub fn sniff(data: &[u8]) -> &'static str {
    let d = &data[..data.len().min(512)];
    let ws = d
        .iter()
        .position(|b| !matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' '))
        .unwrap_or(d.len());
    let t = &d[ws..];
    let upper: Vec<u8> = t.iter().take(16).map(|b| b.to_ascii_uppercase()).collect();
    for tag in [
        "<!DOCTYPE HTML",
        "<HTML",
        "<HEAD",
        "<SCRIPT",
        "<IFRAME",
        "<H1",
        "<DIV",
        "<FONT",
        "<TABLE",
        "<A",
        "<STYLE",
        "<TITLE",
        "<B",
        "<BODY",
        "<BR",
        "<P",
        "<!--",
    ] {
        let tb = tag.as_bytes();
        if upper.len() > tb.len() && upper.starts_with(tb) && matches!(upper[tb.len()], b' ' | b'>') {
            return "text/html; charset=utf-8";
        }
    }
    if t.starts_with(b"<?xml") {
        return "text/xml; charset=utf-8";
    }
    if d.starts_with(b"%PDF-") {
        return "application/pdf";
    }
    if d.starts_with(b"\x1f\x8b\x08") {
        return "application/x-gzip";
    }
    if d.starts_with(b"PK\x03\x04") {
        return "application/zip";
    }
    if d.starts_with(b"\x89PNG\r\n\x1a\n") {
        return "image/png";
    }
    if d.iter()
        .any(|&b| b <= 0x08 || b == 0x0b || (0x0e..=0x1a).contains(&b) || (0x1c..=0x1f).contains(&b))
    {
        return "application/octet-stream";
    }
    "text/plain; charset=utf-8"
}

/// Go's built-in mime table (no /etc/mime.types in the image).
fn mime_by_ext(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "avif" => "image/avif",
        "css" => "text/css; charset=utf-8",
        "gif" => "image/gif",
        "htm" | "html" => "text/html; charset=utf-8",
        "jpeg" | "jpg" => "image/jpeg",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "webp" => "image/webp",
        "xml" => "text/xml; charset=utf-8",
        _ => return None,
    })
}

// ------------------------------------------------------------------ serving

pub fn serve(listener: TcpListener, cfg: Arc<Config>, tls: Option<Arc<rustls::ServerConfig>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let cfg = cfg.clone();
        let tls = tls.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
            let _ = stream.set_nodelay(true);
            let conn: Box<dyn Conn> = match tls {
                None => Box::new(stream),
                Some(t) => match rustls::ServerConnection::new(t) {
                    Ok(c) => Box::new(rustls::StreamOwned::new(c, stream)),
                    Err(_) => return,
                },
            };
            handle_conn(conn, &cfg);
        });
    }
}

fn read_request(r: &mut BufReader<Box<dyn Conn>>) -> Result<Option<(Request, String, bool)>, ()> {
    let mut line = String::new();
    // skip leading empty lines (RFC 7230 3.5)
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
        if line.trim_end_matches(['\r', '\n']).is_empty() {
            continue;
        }
        break;
    }
    let rl = line.trim_end_matches(['\r', '\n']).to_string();
    let mut parts = rl.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(());
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Err(());
    }
    let mut headers = Vec::new();
    let mut total = rl.len();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|_| ())? == 0 {
            return Err(());
        }
        total += line.len();
        if total > 1 << 20 {
            return Err(());
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').ok_or(())?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    // target: origin-form or absolute-form
    let mut t = target;
    if let Some(rest) = t.strip_prefix("http://").or_else(|| t.strip_prefix("https://")) {
        t = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    }
    if !t.starts_with('/') && t != "*" {
        return Err(());
    }
    let (p, q) = t.split_once('?').unwrap_or((t, ""));
    let path = path_unescape(p).ok_or(())?;
    let req = Request {
        method: method.to_string(),
        target: target.to_string(),
        path,
        raw_query: q.to_string(),
        headers,
    };
    Ok(Some((req, version.to_string(), false)))
}

fn handle_conn(conn: Box<dyn Conn>, cfg: &Config) {
    let mut r = BufReader::new(conn);
    loop {
        let (req, version) = match read_request(&mut r) {
            Ok(Some((req, v, _))) => (req, v),
            Ok(None) => return,
            Err(()) => {
                let _ = r.get_mut().write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
                );
                let _ = r.get_mut().flush();
                return;
            }
        };
        let conn_hdr = req.header("Connection").unwrap_or("").to_ascii_lowercase();
        let mut keep = if version == "HTTP/1.0" {
            conn_hdr.contains("keep-alive")
        } else {
            !conn_hdr.contains("close")
        };
        // discard a request body
        if req.header("Transfer-Encoding").is_some() {
            keep = false;
        } else if let Some(n) = req.header("Content-Length").and_then(|v| v.parse::<u64>().ok()) {
            if n > 0 && std::io::copy(&mut (&mut r).take(n), &mut std::io::sink()).is_err() {
                return;
            }
        }
        let resp = route(&req, cfg);
        if write_response(r.get_mut(), &req, resp, keep, &version).is_err() || !keep {
            return;
        }
    }
}

fn write_response(
    w: &mut Box<dyn Conn>,
    req: &Request,
    mut resp: Response,
    keep: bool,
    version: &str,
) -> std::io::Result<()> {
    let len = match &resp.body {
        Body::Empty => 0,
        Body::Bytes(b) => b.len() as u64,
        Body::File(_, _, l) => *l,
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if !resp.headers.iter().any(|(k, _)| k == "Content-Length") && resp.status != 304 {
        resp.headers.push(("Content-Length".into(), len.to_string()));
    }
    resp.headers.push(("Date".into(), log::http_date(now)));
    if !keep {
        resp.headers.push(("Connection".into(), "close".into()));
    } else if version == "HTTP/1.0" {
        resp.headers.push(("Connection".into(), "keep-alive".into()));
    }
    resp.headers.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        match resp.body {
            Body::Empty => {}
            Body::Bytes(b) => w.write_all(&b)?,
            Body::File(mut f, off, l) => {
                f.seek(SeekFrom::Start(off))?;
                let n = std::io::copy(&mut (&mut f).take(l), w)?;
                if n != l {
                    return Err(std::io::Error::other("short file"));
                }
            }
        }
    }
    w.flush()
}

/// Go's ServeMux cleanPath: path.Clean, keeping a trailing slash.
fn mux_clean(p: &str) -> String {
    let mut c = clean_path(p);
    if p.ends_with('/') && c != "/" {
        c.push('/');
    }
    c
}

pub fn route(req: &Request, cfg: &Config) -> Response {
    log::info(&format!("HTTP {} {}", req.method, req.target));
    if req.target == "*" {
        return Response::error(400, "400 Bad Request");
    }
    let clean = mux_clean(&req.path);
    if clean != req.path {
        let mut loc = url_escape_path(&clean);
        if !req.raw_query.is_empty() {
            loc = format!("{loc}?{}", req.raw_query);
        }
        return Response::redirect(req, &loc);
    }
    let path = req.path.as_str();
    match path {
        "/" => Response::written("matchbox\n"),
        "/boot.ipxe" | "/boot.ipxe.0" => Response::written(if cfg.compat_no_arch {
            IPXE_BOOTSTRAP_NO_ARCH
        } else {
            IPXE_BOOTSTRAP
        }),
        "/ipxe" => ipxe(req, cfg),
        "/generic" => generic(req, cfg),
        "/metadata" => metadata(req, cfg),
        "/ignition" => ignition(req, cfg),
        // not implemented by the double (matchbox has them): same answer as no match
        "/grub" | "/cloud" => {
            log::info("matchbox-double: /grub and /cloud are not implemented");
            Response::not_found()
        }
        "/assets" if cfg.assets_path.is_some() => Response::redirect(req, "/assets/"),
        p if p.starts_with("/assets/") && cfg.assets_path.is_some() => {
            assets(req, cfg.assets_path.as_ref().unwrap(), &p["/assets/".len()..])
        }
        _ => Response::not_found(),
    }
}

fn labels_field(req: &Request) -> (&'static str, String) {
    let l = labels_from_query(&req.raw_query);
    ("labels", go_map(&l))
}

fn go_map(m: &BTreeMap<String, String>) -> String {
    format!(
        "map[{}]",
        m.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ")
    )
}

fn ipxe(req: &Request, cfg: &Config) -> Response {
    let store = Store::new(&cfg.data_path);
    let labels = labels_from_query(&req.raw_query);
    let Some((_, profile)) = store.select_profile(&labels) else {
        log::log(Level::Info, "No matching profile", &[labels_field(req)]);
        return Response::not_found();
    };
    log::log(
        Level::Debug,
        "Matched an iPXE config",
        &[labels_field(req), ("profile", profile.id.clone())],
    );
    let Some(boot) = profile.boot else {
        log::error("error rendering template: template: iPXE config:2:9: executing \"iPXE config\" at <.Kernel>: nil pointer evaluating *storagepb.NetBoot.Kernel");
        return Response::not_found();
    };
    Response::written(render_ipxe(&boot.kernel, &boot.args, &boot.initrd))
}

/// matchbox's ipxeTemplate:
/// `#!ipxe\nkernel {{.Kernel}}{{range $arg := .Args}} {{$arg}}{{end}}\n{{- range $element := .Initrd }}\ninitrd {{$element}}\n{{- end}}\nboot\n`
pub fn render_ipxe(kernel: &str, args: &[String], initrd: &[String]) -> String {
    let mut s = format!("#!ipxe\nkernel {kernel}");
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    for i in initrd {
        s.push_str("\ninitrd ");
        s.push_str(i);
    }
    s.push_str("\nboot\n");
    s
}

/// collectVariables: metadata, then selectors (lower-cased keys), then `request`.
fn collect_variables(req: &Request, group: &Group) -> V {
    let mut data: BTreeMap<String, V> = BTreeMap::new();
    if let Some(md) = &group.metadata {
        for (k, v) in md {
            data.insert(k.clone(), V::from_json(v));
        }
    }
    for (k, v) in &group.selector {
        data.insert(k.to_lowercase(), V::Str(v.clone()));
    }
    let labels = labels_from_query(&req.raw_query);
    let mut request = BTreeMap::new();
    request.insert(
        "query".to_string(),
        V::Map(labels.into_iter().map(|(k, v)| (k, V::Str(v))).collect()),
    );
    request.insert("raw_query".to_string(), V::Str(req.raw_query.clone()));
    data.insert("request".to_string(), V::Map(request));
    V::Map(data)
}

fn generic(req: &Request, cfg: &Config) -> Response {
    let store = Store::new(&cfg.data_path);
    let labels = labels_from_query(&req.raw_query);
    let Some(group) = store.select_group(&labels) else {
        log::log(Level::Info, "No matching group", &[labels_field(req)]);
        return Response::not_found();
    };
    let gf = || {
        vec![
            labels_field(req),
            ("group", group.id.clone()),
            ("group_name", group.name.clone()),
        ]
    };
    let profile = match store.profile_get(&group.profile) {
        Ok(p) => p,
        Err(_) => {
            log::log(Level::Info, &format!("No profile named: {}", group.profile), &gf());
            return Response::not_found();
        }
    };
    let contents = match store.generic_get(&profile.generic_id) {
        Ok(c) => c,
        Err(_) => {
            let mut f = gf();
            f.push(("profile", group.profile.clone()));
            log::log(
                Level::Info,
                &format!("No generic template named: {}", profile.generic_id),
                &f,
            );
            return Response::not_found();
        }
    };
    log::log(
        Level::Debug,
        "Matched a generic template",
        &[
            labels_field(req),
            ("group", group.id.clone()),
            ("profile", profile.id.clone()),
        ],
    );
    let data = collect_variables(req, &group);
    let out = match gotemplate::Template::parse(&contents) {
        Err(e) => {
            log::error(&format!("error parsing template: {e}"));
            return Response::not_found();
        }
        Ok(t) => match t.execute(&data) {
            Err(e) => {
                log::error(&format!("error rendering template: {e}"));
                return Response::not_found();
            }
            Ok(o) => o,
        },
    };
    // http.ServeContent with no name and a zero modtime: sniffed type, ranges
    let b = out.into_bytes();
    let ct = sniff(&b).to_string();
    let size = b.len() as u64;
    serve_content(req, &ct, None, size, |off, len| {
        Ok(Body::Bytes(b[off as usize..(off + len) as usize].to_vec()))
    })
}

fn metadata(req: &Request, cfg: &Config) -> Response {
    let store = Store::new(&cfg.data_path);
    let labels = labels_from_query(&req.raw_query);
    let Some(group) = store.select_group(&labels) else {
        log::log(Level::Info, "No matching group", &[labels_field(req)]);
        return Response::not_found();
    };
    let data = collect_variables(req, &group);
    let mut out = String::new();
    fn env(out: &mut String, prefix: &str, v: &V) {
        if let V::Map(m) = v {
            for (k, v) in m {
                let name = format!("{prefix}{k}");
                match v {
                    V::Str(_) | V::Bool(_) | V::Float(_) => {
                        out.push_str(&format!("{}={}\n", name.to_uppercase(), gotemplate::go_print(v)))
                    }
                    V::Map(_) => env(out, &format!("{name}_"), v),
                    _ => {}
                }
            }
        }
    }
    env(&mut out, "", &data);
    Response::new(200).header("Content-Type", "plain/text").bytes(out)
}

fn ignition(req: &Request, cfg: &Config) -> Response {
    let store = Store::new(&cfg.data_path);
    let labels = labels_from_query(&req.raw_query);
    let Some(group) = store.select_group(&labels) else {
        log::log(Level::Info, "No matching group", &[labels_field(req)]);
        return Response::not_found();
    };
    let Ok(profile) = store.profile_get(&group.profile) else {
        log::info(&format!("No profile named: {}", group.profile));
        return Response::not_found();
    };
    let Ok(contents) = store.ignition_get(&profile.ignition_id) else {
        log::info(&format!(
            "No Ignition or Container Linux Config template named: {}",
            profile.ignition_id
        ));
        return Response::not_found();
    };
    if profile.ignition_id.ends_with(".ign") || profile.ignition_id.ends_with(".ignition") {
        let v: serde_json::Value = match serde_json::from_str(&contents) {
            Ok(v) => v,
            Err(e) => {
                log::warn(&format!("warning parsing Ignition: {e}"));
                serde_json::json!({"ignition": {"version": ""}})
            }
        };
        return Response::new(200)
            .header("Content-Type", "application/json")
            .bytes(serde_json::to_vec(&v).unwrap_or_default());
    }
    // Butane translation is not implemented: a Talos machine config (or any
    // non-Butane YAML) fails translation in matchbox too, so 404 is faithful there.
    log::error("error translating Butane Config: matchbox-double does not implement Butane translation");
    Response::not_found()
}

// ------------------------------------------------------------------ assets

fn io_to_http(e: &std::io::Error) -> Response {
    match e.kind() {
        std::io::ErrorKind::NotFound => Response::not_found(),
        std::io::ErrorKind::PermissionDenied => Response::error(403, "403 Forbidden"),
        // ENOTDIR (a file used as a directory) counts as not found in Go
        _ if e.raw_os_error() == Some(20) => Response::not_found(),
        _ => Response::error(500, "500 Internal Server Error"),
    }
}

fn assets(req: &Request, root: &Path, rest: &str) -> Response {
    // http.FileServer under http.StripPrefix("/assets/")
    if rest.split('/').any(|s| s == "..") || rest.contains('\0') || rest.contains('\\') {
        return Response::error(400, "invalid URL path");
    }
    let url = format!("/{rest}");
    if url.ends_with("/index.html") {
        return Response::redirect(req, "./");
    }
    let name = clean_path(&url);
    let full = root.join(name.trim_start_matches('/'));
    let meta = match std::fs::metadata(&full) {
        Ok(m) => m,
        Err(e) => return io_to_http(&e),
    };
    let base = name.rsplit('/').next().unwrap_or("");
    if meta.is_dir() {
        if !url.ends_with('/') {
            return Response::redirect(req, &format!("{}/", url_escape_path(base)));
        }
    } else if url.ends_with('/') {
        return Response::redirect(req, &format!("../{}", url_escape_path(base)));
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    if meta.is_dir() {
        let index = full.join("index.html");
        if let Ok(im) = std::fs::metadata(&index) {
            if im.is_file() {
                return serve_file(req, &index, &im, "index.html");
            }
        }
        let mut entries: Vec<(String, bool)> = match std::fs::read_dir(&full) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let d = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                    (n, d)
                })
                .collect(),
            Err(e) => return io_to_http(&e),
        };
        entries.sort();
        let mut body =
            String::from("<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n");
        for (n, d) in entries {
            let n = if d { format!("{n}/") } else { n };
            body.push_str(&format!(
                "<a href=\"{}\">{}</a>\n",
                url_escape_path(&n),
                html_escape(&n)
            ));
        }
        body.push_str("</pre>\n");
        let mut r = Response::new(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .bytes(body);
        if let Some(m) = mtime {
            r = r.header("Last-Modified", log::http_date(m));
        }
        return r;
    }
    serve_file(req, &full, &meta, base)
}

fn serve_file(req: &Request, path: &Path, meta: &std::fs::Metadata, name: &str) -> Response {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return io_to_http(&e),
    };
    let ct = match mime_by_ext(name) {
        Some(c) => c.to_string(),
        None => {
            let mut buf = vec![0u8; 512];
            let n = f.read(&mut buf).unwrap_or(0);
            sniff(&buf[..n]).to_string()
        }
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let size = meta.len();
    serve_content(req, &ct, mtime, size, move |off, len| {
        let f2 = f.try_clone()?;
        Ok(Body::File(f2, off, len))
    })
}

/// Single byte range, resolved against `size`.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct ByteRange {
    pub start: u64,
    pub length: u64,
}

/// Go's parseRange. Ok(empty) when no range applies; Err when unsatisfiable/invalid.
pub fn parse_range(s: &str, size: u64) -> Result<Vec<ByteRange>, ()> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let Some(spec) = s.strip_prefix("bytes=") else {
        return Err(());
    };
    let mut ranges = Vec::new();
    let mut no_overlap = false;
    for ra in spec.split(',') {
        let ra = ra.trim_matches([' ', '\t']);
        if ra.is_empty() {
            continue;
        }
        let (start, end) = ra.split_once('-').ok_or(())?;
        let (start, end) = (start.trim_matches([' ', '\t']), end.trim_matches([' ', '\t']));
        let r = if start.is_empty() {
            // suffix range
            if end.is_empty() || end.starts_with('-') {
                return Err(());
            }
            let mut i: u64 = end.parse().map_err(|_| ())?;
            if i > size {
                i = size;
            }
            ByteRange {
                start: size - i,
                length: i,
            }
        } else {
            let i: u64 = start.parse().map_err(|_| ())?;
            if i >= size {
                no_overlap = true;
                continue;
            }
            let length = if end.is_empty() {
                size - i
            } else {
                let mut e: u64 = end.parse().map_err(|_| ())?;
                if i > e {
                    return Err(());
                }
                if e >= size {
                    e = size - 1;
                }
                e - i + 1
            };
            ByteRange { start: i, length }
        };
        ranges.push(r);
    }
    if no_overlap && ranges.is_empty() {
        return Err(());
    }
    Ok(ranges)
}

fn serve_content(
    req: &Request,
    ct: &str,
    mtime: Option<u64>,
    size: u64,
    body: impl Fn(u64, u64) -> std::io::Result<Body>,
) -> Response {
    let mut r = Response::new(200)
        .header("Accept-Ranges", "bytes")
        .header("Content-Type", ct);
    if let Some(m) = mtime {
        r = r.header("Last-Modified", log::http_date(m));
    }
    let range_hdr = if req.method == "GET" || req.method == "HEAD" {
        req.header("Range").unwrap_or("")
    } else {
        ""
    };
    let ranges = match parse_range(range_hdr, size) {
        Ok(r) => r,
        Err(()) => {
            return Response::error(416, "invalid range: failed to overlap")
                .header("Content-Range", format!("bytes */{size}"));
        }
    };
    let total: u64 = ranges.iter().map(|r| r.length).sum();
    let res = if ranges.len() == 1 {
        let br = ranges[0];
        r.status = 206;
        r = r.header(
            "Content-Range",
            format!("bytes {}-{}/{}", br.start, br.start + br.length - 1, size),
        );
        body(br.start, br.length).map(|b| {
            r.body = b;
            r
        })
    } else if ranges.len() > 1 && total <= size {
        // multipart/byteranges, built in memory
        let boundary = format!("{:016x}{:08x}", std::process::id() as u64 * 2654435761, size);
        let mut out = Vec::new();
        let mut err = None;
        for br in &ranges {
            out.extend_from_slice(
                format!(
                    "\r\n--{boundary}\r\nContent-Range: bytes {}-{}/{size}\r\nContent-Type: {ct}\r\n\r\n",
                    br.start,
                    br.start + br.length - 1
                )
                .as_bytes(),
            );
            match body(br.start, br.length) {
                Ok(Body::Bytes(b)) => out.extend_from_slice(&b),
                Ok(Body::File(mut f, off, len)) => {
                    let mut buf = vec![0u8; len as usize];
                    if let Err(e) = f.seek(SeekFrom::Start(off)).and_then(|_| f.read_exact(&mut buf)) {
                        err = Some(e);
                    }
                    out.extend_from_slice(&buf);
                }
                Ok(Body::Empty) => {}
                Err(e) => err = Some(e),
            }
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        r.status = 206;
        r.headers.retain(|(k, _)| k != "Content-Type");
        r = r.header("Content-Type", format!("multipart/byteranges; boundary={boundary}"));
        match err {
            Some(e) => Err(e),
            None => Ok(r.bytes(out)),
        }
    } else {
        body(0, size).map(|b| {
            r.body = b;
            r
        })
    };
    res.unwrap_or_else(|e| io_to_http(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("", 10).unwrap(), vec![]);
        assert_eq!(
            parse_range("bytes=0-3", 10).unwrap(),
            vec![ByteRange { start: 0, length: 4 }]
        );
        assert_eq!(
            parse_range("bytes=5-", 10).unwrap(),
            vec![ByteRange { start: 5, length: 5 }]
        );
        assert_eq!(
            parse_range("bytes=-3", 10).unwrap(),
            vec![ByteRange { start: 7, length: 3 }]
        );
        assert_eq!(
            parse_range("bytes=-30", 10).unwrap(),
            vec![ByteRange { start: 0, length: 10 }]
        );
        assert_eq!(
            parse_range("bytes=8-100", 10).unwrap(),
            vec![ByteRange { start: 8, length: 2 }]
        );
        assert!(parse_range("bytes=10-", 10).is_err());
        assert!(parse_range("bytes=4-2", 10).is_err());
        assert!(parse_range("items=0-1", 10).is_err());
        assert_eq!(parse_range("bytes=0-0,2-3", 10).unwrap().len(), 2);
    }

    #[test]
    fn ipxe_template() {
        let s = render_ipxe(
            "/assets/k",
            &["a=1".into(), "b".into()],
            &["/assets/i1".into(), "/assets/i2".into()],
        );
        assert_eq!(
            s,
            "#!ipxe\nkernel /assets/k a=1 b\ninitrd /assets/i1\ninitrd /assets/i2\nboot\n"
        );
        assert_eq!(render_ipxe("k", &[], &[]), "#!ipxe\nkernel k\nboot\n");
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"matchbox\n"), "text/plain; charset=utf-8");
        assert_eq!(sniff(b"\x00\x01MZ"), "application/octet-stream");
        assert_eq!(sniff(b"  <html>"), "text/html; charset=utf-8");
    }
}
