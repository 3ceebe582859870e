//! A tiny HTTP file server on 127.0.0.1 that counts the requests it answers: the stand-in for
//! a download URL (boot.ipxe.org, a mirror); and a blocking GET for tests that ask a server.

// Shared by several test crates, each of which uses only part of it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// More connections than any test makes; the server thread stops after this many.
const MAX_CONNECTIONS: usize = 64;
/// How long one client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub struct FileServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serves `body` (200) at `path`, and 404 elsewhere, on a free port of 127.0.0.1.
    pub fn serve(path: &str, body: Vec<u8>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped, path) = (requests.clone(), stop.clone(), path.to_string());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().take(MAX_CONNECTIONS) {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    answer(stream, &path, &body, &count);
                }
            }
        });
        FileServer {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests answered so far (any path).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept, which then sees the flag. Dropped in another network
        // namespace (a test unwinding from a panic, not in its lab's), the address is not
        // there: the thread is left to end with the process rather than waited for forever.
        let woken = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(t) = self.thread.take().filter(|_| woken) {
            let _ = t.join();
        }
    }
}

fn answer(mut stream: TcpStream, path: &str, body: &[u8], count: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let target = line.split_whitespace().nth(1).unwrap_or_default();
    count.fetch_add(1, Ordering::SeqCst);
    let (status, body) = if target == path {
        ("200 OK", body)
    } else {
        ("404 Not Found", &b"not found\n"[..])
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// A URL on 127.0.0.1 where nothing listens: the port of a listener just closed.
pub fn closed_url(path: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}{path}")
}

/// `(status, body)` of a GET of `url` (no proxy, 5 s), from a test's plain thread.
pub fn get(url: &str) -> (u16, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        (r.status().as_u16(), r.bytes().await.unwrap_or_default().to_vec())
    })
}
