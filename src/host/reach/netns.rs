//! Work done inside another process's network namespace — a container's — so that an address
//! only that namespace can reach (a macvlan child, from its own host) can still be checked.
//!
//! A network namespace belongs to a thread, not a process: only a dedicated thread switches,
//! runs its own single-threaded tokio runtime, and ends with the work. No other thread of
//! cozyboot ever leaves the namespace it started in.

use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;

/// Opens the network namespace of process `pid`. Needs the right to look into that process
/// (root, for a container's root process).
pub fn open(pid: u32) -> Result<File, String> {
    let path = format!("/proc/{pid}/ns/net");
    File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))
}

/// Runs `work()` to completion on a new thread inside the namespace `ns`.
pub async fn run_in<T, F, Fut>(ns: File, work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cozyboot-netns".into())
        .spawn(move || {
            let _ = tx.send(enter_and_run(&ns, work));
        })
        .map_err(|e| format!("cannot start a thread for the container's network namespace: {e}"))?;
    rx.await
        .map_err(|_| "the thread working in the container's network namespace died".to_string())?
}

fn enter_and_run<T, F, Fut>(ns: &File, work: F) -> Result<T, String>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    // SAFETY: `ns` is an open namespace file for the whole call; setns changes only the
    // calling thread, which is this dedicated one.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "cannot enter the container's network namespace: {}",
            std::io::Error::last_os_error()
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime in the container's network namespace: {e}"))?;
    Ok(runtime.block_on(work()))
}
