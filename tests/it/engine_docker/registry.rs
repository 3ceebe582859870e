//! The smallest Docker registry v2 that `docker pull` accepts: one repository, fixed tags,
//! uncompressed layer (the engine sniffs compression). dockerd runs in the host network
//! namespace and treats 127.0.0.0/8 registries as plain-HTTP, so nothing leaves the host.

use super::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub struct Registry {
    pub port: u16,
    pub manifest_digest: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Content {
    tags: Vec<String>,
    manifest: Vec<u8>,
    blobs: HashMap<String, Vec<u8>>,
}

impl Registry {
    pub async fn start(arch: &str, tags: &[&str]) -> Registry {
        let layer = layer_tar(&[Entry::Dir("etc/"), Entry::File("etc/cozyboot-pulled", b"yes".to_vec())]);
        let config = image_config(arch, &layer);
        let digest = |bytes: &[u8]| format!("sha256:{}", sha256_hex(bytes));
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config.len(), "digest": digest(&config),
            },
            "layers": [{
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": layer.len(), "digest": digest(&layer),
            }],
        }))
        .unwrap();
        let manifest_digest = digest(&manifest);
        let content = Arc::new(Content {
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            manifest,
            blobs: HashMap::from([(digest(&config), config), (digest(&layer), layer)]),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<String>>> = Default::default();
        let log = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, content.clone(), log.clone()));
            }
        });
        Registry {
            port,
            manifest_digest,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(socket: tokio::net::TcpStream, content: Arc<Content>, log: Arc<Mutex<Vec<String>>>) {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        // Skip headers; pulls send no request bodies.
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        log.lock().unwrap().push(format!("{method} {path}"));
        let (status, content_type, body, digest) = respond(&content, path);
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Docker-Distribution-API-Version: registry/2.0\r\n",
            body.len()
        );
        if let Some(digest) = digest {
            head.push_str(&format!("Docker-Content-Digest: {digest}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(&body);
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn respond(content: &Content, path: &str) -> (&'static str, &'static str, Vec<u8>, Option<String>) {
    let not_found = |code: &str| {
        let body = format!(r#"{{"errors":[{{"code":"{code}","message":"not here"}}]}}"#).into_bytes();
        ("404 Not Found", "application/json", body, None)
    };
    let repo = "/v2/cozyboot/pulltest/";
    if path == "/v2/" {
        return ("200 OK", "application/json", b"{}".to_vec(), None);
    }
    let Some(rest) = path.strip_prefix(repo) else {
        return not_found("NAME_UNKNOWN");
    };
    if let Some(reference) = rest.strip_prefix("manifests/") {
        let digest = format!("sha256:{}", sha256_hex(&content.manifest));
        if content.tags.iter().any(|t| t == reference) || reference == digest {
            let media = "application/vnd.docker.distribution.manifest.v2+json";
            return ("200 OK", media, content.manifest.clone(), Some(digest));
        }
        return not_found("MANIFEST_UNKNOWN");
    }
    if let Some(digest) = rest.strip_prefix("blobs/") {
        if let Some(blob) = content.blobs.get(digest) {
            return (
                "200 OK",
                "application/octet-stream",
                blob.clone(),
                Some(digest.to_owned()),
            );
        }
        return not_found("BLOB_UNKNOWN");
    }
    not_found("UNSUPPORTED")
}
