//! Writing and hashing on a thread of their own, and syncing to disk on two more (one
//! flushes a large file while it is written, one syncs each complete file), so that none of
//! them holds up reading the archive: the engine stops sending while the reader is away from
//! its socket, and with all of it on one thread the extraction was slower than `docker cp`.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use sha2::{Digest, Sha256};

/// Buffers in circulation: one being filled, one being written, one waiting.
const BUFFERS: usize = 3;
/// Bytes per `write`: on Linux 6.18 / ext4, writing a 1 MiB buffer in one call cost about
/// 350 ms more CPU over 320 MiB than writing it 64 KiB at a time (`perf stat`, bench image).
const WRITE_SLICE: usize = 64 * 1024;
/// Bytes of a file written between two flushes to disk while it is still being written, on
/// a thread of its own. With nothing flushed before it, the `fsync` at the end of a 256 MiB
/// file waited 330-360 ms on the bench VM (the device flushing its cache), the longest wait
/// of the extraction. Flushed every 32 MiB while the next bytes arrive, the Talos-shaped
/// image took 2.22 s instead of 2.45 s (median of seven alternating runs); every 16 or
/// 64 MiB did worse than every 32 (2.14 s and 2.29 s against 2.08 s, in another run).
const FLUSH_EVERY: u64 = 32 * 1024 * 1024;
/// Complete files handed to the syncer thread and not yet synced, at most: past this the
/// writer waits. Syncing on the writer's own thread held up the archive: a tree of 1,024
/// modules spent 0.58 s in `fsync` there, about 30 ms every 64 files (the first `fsync` of
/// a batch waited for the data of all of them). Well below the usual limit of 1,024 open
/// files.
const SYNC_BATCH: usize = 64;

enum Job {
    /// Start a new file (already created by the reader, which judges names).
    Open { file: File, path: PathBuf, mode: u32 },
    /// The next bytes of the current file.
    Bytes { buf: Vec<u8>, len: usize },
    /// The current file is complete: take its digest and put it on disk.
    Close,
}

/// The writer thread is gone: [`Writer::finish`] says why.
#[derive(Debug)]
pub(super) struct Stopped;

pub(super) struct Writer<'scope> {
    jobs: SyncSender<Job>,
    free: Receiver<Vec<u8>>,
    thread: ScopedJoinHandle<'scope, Result<Vec<String>, (PathBuf, io::Error)>>,
}

impl<'scope> Writer<'scope> {
    /// Starts the thread in `scope`, which joins it even when the extraction fails early.
    pub(super) fn start(scope: &'scope Scope<'scope, '_>, buffer_size: usize) -> Self {
        let (jobs, inbox) = sync_channel(BUFFERS);
        // Room for every buffer: handing one back never blocks the writer.
        let (give_back, free) = sync_channel(BUFFERS);
        for _ in 0..BUFFERS {
            let _ = give_back.send(vec![0u8; buffer_size]);
        }
        let thread = scope.spawn(move || run(&inbox, &give_back));
        Writer { jobs, free, thread }
    }

    /// An empty buffer to fill, once the writer has handed one back.
    pub(super) fn buffer(&self) -> Result<Vec<u8>, Stopped> {
        self.free.recv().map_err(|_| Stopped)
    }

    /// Makes `file` the current file; it gets `mode` once complete.
    pub(super) fn open(&self, file: File, path: PathBuf, mode: u32) -> Result<(), Stopped> {
        self.send(Job::Open { file, path, mode })
    }

    /// Appends `buf[..len]` to the current file.
    pub(super) fn write(&self, buf: Vec<u8>, len: usize) -> Result<(), Stopped> {
        self.send(Job::Bytes { buf, len })
    }

    /// The current file is complete.
    pub(super) fn close(&self) -> Result<(), Stopped> {
        self.send(Job::Close)
    }

    fn send(&self, job: Job) -> Result<(), Stopped> {
        self.jobs.send(job).map_err(|_| Stopped)
    }

    /// Waits until every closed file is written, hashed and on disk: their SHA-256 (hex) in
    /// the order they were opened, or the first failure, with the path it concerns.
    pub(super) fn finish(self) -> Result<Vec<String>, (PathBuf, io::Error)> {
        drop(self.jobs);
        match self.thread.join() {
            Ok(finished) => finished,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

struct Current {
    file: File,
    path: PathBuf,
    mode: u32,
    hasher: Sha256,
    written: u64,
    /// `written` when the last flush was asked for.
    flushed: u64,
}

type Failure = (PathBuf, io::Error);

fn run(inbox: &Receiver<Job>, give_back: &SyncSender<Vec<u8>>) -> Result<Vec<String>, Failure> {
    // Room for one request: while a flush runs, the next one is skipped, not queued.
    let (flush, flush_requests) = sync_channel::<(File, PathBuf)>(1);
    let (closed, sync_requests) = sync_channel::<(File, PathBuf)>(SYNC_BATCH);
    std::thread::scope(|scope| {
        let flusher = scope.spawn(move || flush_files(&flush_requests));
        let syncer = scope.spawn(move || sync_files(&sync_requests));
        let written = write_files(inbox, give_back, &flush, &closed);
        drop(flush);
        drop(closed);
        let join = |thread: ScopedJoinHandle<'_, Result<(), Failure>>| {
            thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        let synced = join(syncer);
        let flushed = join(flusher);
        // The writer's own failure is what stopped it; if none, it stopped because the
        // syncer had; a failed flush may be the only sign of a failing device: Linux
        // reports a write-back error to one `fsync` of the open file, here the flusher's.
        let digests = written?;
        synced?;
        flushed?;
        Ok(digests)
    })
}

/// Puts each complete file it is handed on disk, in the order handed, and stops at the
/// first failure (which stops the writer at its next hand-over).
fn sync_files(requests: &Receiver<(File, PathBuf)>) -> Result<(), Failure> {
    for (file, path) in requests {
        file.sync_all().map_err(|e| (path, e))?;
    }
    Ok(())
}

/// Flushes each file it is handed (a second descriptor of a file still being written).
/// After a failure it only drains the requests: the first error is the one to report.
fn flush_files(requests: &Receiver<(File, PathBuf)>) -> Result<(), Failure> {
    let mut outcome = Ok(());
    for (file, path) in requests {
        if outcome.is_ok() {
            outcome = file.sync_data().map_err(|e| (path, e));
        }
    }
    outcome
}

fn write_files(
    inbox: &Receiver<Job>,
    give_back: &SyncSender<Vec<u8>>,
    flush: &SyncSender<(File, PathBuf)>,
    closed: &SyncSender<(File, PathBuf)>,
) -> Result<Vec<String>, Failure> {
    let mut digests = Vec::new();
    let mut current: Option<Current> = None;
    for job in inbox {
        match job {
            Job::Open { file, path, mode } => {
                current = Some(Current {
                    file,
                    path,
                    mode,
                    hasher: Sha256::new(),
                    written: 0,
                    flushed: 0,
                });
            }
            Job::Bytes { buf, len } => {
                if let Some(c) = current.as_mut().filter(|_| len > 0) {
                    for slice in buf[..len].chunks(WRITE_SLICE) {
                        c.file.write_all(slice).map_err(|e| (c.path.clone(), e))?;
                    }
                    c.hasher.update(&buf[..len]);
                    start_writeback(&c.file, c.written, len);
                    c.written += len as u64;
                    if c.written - c.flushed >= FLUSH_EVERY {
                        c.flushed = c.written;
                        let second = c.file.try_clone().map_err(|e| (c.path.clone(), e))?;
                        // Full: a flush is still running, and there is a next time soon.
                        let _ = flush.try_send((second, c.path.clone()));
                    }
                }
                let _ = give_back.send(buf);
            }
            Job::Close => {
                if let Some(c) = current.take() {
                    // The umask may have removed bits that the TFTP server needs.
                    if let Err(e) = c.file.set_permissions(Permissions::from_mode(c.mode)) {
                        return Err((c.path, e));
                    }
                    digests.push(hex::encode(c.hasher.finalize()));
                    // Callers rename the staging directory into place: `run` waits for
                    // the syncer, so every byte is on disk before they can.
                    if closed.send((c.file, c.path)).is_err() {
                        // The syncer stopped on a failure, which `run` reports.
                        break;
                    }
                }
            }
        }
    }
    Ok(digests)
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk now, without waiting,
/// so that the `fsync` at the end of the file finds little left to do (`docker cp`, which
/// does not sync at all, leaves everything to the kernel's writeback 30 s later).
fn start_writeback(file: &File, offset: u64, len: usize) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: `sync_file_range` only reads its integer arguments; the descriptor is open for
    // as long as `file` is borrowed. A failure only loses the head start: `sync_all` follows.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Feeds `contents` to a writer as files `0`, `1`, ... in `dir`, `piece` bytes at a time.
    fn write_all(dir: &std::path::Path, contents: &[&[u8]], piece: usize) -> Result<Vec<String>, (PathBuf, io::Error)> {
        std::thread::scope(|scope| {
            let writer = Writer::start(scope, piece);
            for (i, content) in contents.iter().enumerate() {
                let path = dir.join(i.to_string());
                writer.open(File::create(&path).unwrap(), path, 0o644).unwrap();
                // More pieces than buffers: the writer must hand them back to go on.
                for bytes in content.chunks(piece) {
                    let mut buf = writer.buffer().unwrap();
                    buf[..bytes.len()].copy_from_slice(bytes);
                    writer.write(buf, bytes.len()).unwrap();
                }
                writer.close().unwrap();
            }
            writer.finish()
        })
    }

    #[test]
    fn writes_every_file_and_gives_digests_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let contents: [&[u8]; 3] = [b"first file, in pieces", b"", b"third"];
        let digests = write_all(dir.path(), &contents, 4).unwrap();
        let expected: Vec<String> = contents.iter().map(|c| hex::encode(Sha256::digest(c))).collect();
        assert_eq!(digests, expected);
        for (i, content) in contents.iter().enumerate() {
            let path = dir.path().join(i.to_string());
            assert_eq!(fs::read(&path).unwrap(), *content);
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        }
    }

    /// Plays the reader, `step(writer, i)` for i = 0, 1, ... until the writer stops taking
    /// work (at most `limit` steps), then asserts that the reader was told and that the
    /// writer's failure names `path` with `errno`.
    fn assert_stops_on(
        path: &std::path::Path,
        errno: i32,
        limit: usize,
        step: impl Fn(&Writer<'_>, usize) -> Result<(), Stopped>,
    ) {
        let (read_side, failure) = std::thread::scope(|scope| {
            let writer = Writer::start(scope, 8);
            let mut read_side = Ok(());
            for i in 0..limit {
                read_side = step(&writer, i);
                if read_side.is_err() {
                    break;
                }
            }
            (read_side, writer.finish().unwrap_err())
        });
        assert!(read_side.is_err(), "the reader was never told the writer stopped");
        assert_eq!(failure.0, path);
        assert_eq!(failure.1.raw_os_error(), Some(errno));
    }

    #[test]
    fn a_failed_write_stops_the_writer_and_names_the_file() {
        // /dev/full refuses every write with ENOSPC, like a full disk.
        let full = PathBuf::from("/dev/full");
        // The reader goes on until the writer stops taking buffers, within a few pieces.
        assert_stops_on(&full, libc::ENOSPC, 100, |writer, i| {
            if i == 0 {
                let file = fs::OpenOptions::new().write(true).open(&full).unwrap();
                writer.open(file, full.clone(), 0o644)?;
            }
            writer.buffer().and_then(|buf| writer.write(buf, 8))
        });
    }

    #[test]
    fn a_file_flushed_while_written_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..FLUSH_EVERY as usize * 2 + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let contents: [&[u8]; 2] = [&big, b"after it"];
        let digests = write_all(dir.path(), &contents, 1024 * 1024).unwrap();
        for (i, content) in contents.iter().enumerate() {
            assert_eq!(digests[i], hex::encode(Sha256::digest(content)));
            assert_eq!(fs::read(dir.path().join(i.to_string())).unwrap(), *content);
        }
    }

    #[test]
    fn a_failed_sync_stops_the_writer_and_names_the_file() {
        // /dev/null takes every write but cannot be synced (EINVAL), like a device that
        // fails its write-back.
        let null = PathBuf::from("/dev/null");
        let dir = tempfile::tempdir().unwrap();
        // More complete files than the syncer holds: the writer must stop taking them.
        assert_stops_on(&null, libc::EINVAL, SYNC_BATCH * 4, |writer, i| {
            let (file, path) = if i == 0 {
                (fs::OpenOptions::new().write(true).open(&null).unwrap(), null.clone())
            } else {
                let path = dir.path().join(i.to_string());
                (File::create(&path).unwrap(), path)
            };
            writer.open(file, path, 0o644)?;
            let buf = writer.buffer()?;
            writer.write(buf, 8)?;
            writer.close()
        });
    }

    #[test]
    fn a_failed_flush_is_reported_with_its_file_and_the_rest_only_drained() {
        // /dev/null takes every write but cannot be synced (EINVAL).
        let (requests, inbox) = sync_channel(3);
        let null = PathBuf::from("/dev/null");
        let dir = tempfile::tempdir().unwrap();
        let later = dir.path().join("later");
        requests
            .send((File::create("/dev/null").unwrap(), null.clone()))
            .unwrap();
        requests.send((File::create(&later).unwrap(), later)).unwrap();
        drop(requests);
        let (path, error) = flush_files(&inbox).unwrap_err();
        assert_eq!(path, null);
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
    }
}
