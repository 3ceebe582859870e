//! A streaming tar extractor that only ever writes regular files and directories under `dest`.
//!
//! The tar comes from an image we do not control (a Talos variant), so every entry is judged
//! before anything is written: no absolute paths, no `..`, no links, no devices or fifos, and
//! hard limits on entry count and sizes. Files are hashed while they stream to disk, on a
//! second thread ([`writer`]).

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use tar::EntryType;

use writer::{Stopped, Writer};

mod writer;

/// dnsmasq's TFTP server (running as root) serves only world-readable files.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;
/// Bytes gathered from the archive before they go to the writer thread: the engine's archive
/// arrives in 32 KiB pieces, and one hand-off (and one write) per piece made the extractor
/// spend more time in the kernel than `docker cp`.
const COPY_BUFFER: usize = 1024 * 1024;

/// Upper bounds that stop a hostile or broken image from filling the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_entries: u64,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        const GIB: u64 = 1024 * 1024 * 1024;
        Limits {
            max_entries: 10_000,
            max_file_bytes: 2 * GIB,
            max_total_bytes: 4 * GIB,
        }
    }
}

/// One regular file written under `dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedFile {
    /// Relative to `dest`, with the stripped prefix removed.
    pub path: PathBuf,
    pub size: u64,
    /// SHA-256 hex of the bytes written.
    pub sha256: String,
}

/// What an extraction wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractReport {
    /// The path inside the image the archive came from, when it came from an image.
    pub source_path: Option<String>,
    pub files: Vec<ExtractedFile>,
    /// Directories created below `dest` (relative).
    pub dirs: Vec<PathBuf>,
    pub total_bytes: u64,
    /// Bytes of archive read from the stream: what a copy cost, whatever it wrote.
    #[serde(default)]
    pub archive_bytes: u64,
}

impl ExtractReport {
    /// Adds what another extraction into the same destination wrote.
    pub fn merge(&mut self, other: ExtractReport) {
        self.files.extend(other.files);
        self.dirs.extend(other.dirs);
        self.total_bytes += other.total_bytes;
        self.archive_bytes += other.archive_bytes;
    }

    pub fn file(&self, relative: impl AsRef<Path>) -> Option<&ExtractedFile> {
        self.files.iter().find(|f| f.path == relative.as_ref())
    }
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    AbsolutePath,
    ParentComponent,
    NotUtf8,
    Symlink { target: String },
    HardLink { target: String },
    Device,
    Fifo,
    UnsupportedType(u8),
    OutsidePrefix { prefix: String },
    TooManyEntries { limit: u64 },
    FileTooLarge { size: u64, limit: u64 },
    TotalTooLarge { limit: u64 },
    Duplicate,
    UnsafeExistingPath,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::AbsolutePath => write!(f, "absolute paths are not allowed"),
            Rule::ParentComponent => write!(f, "`..` path components are not allowed"),
            Rule::NotUtf8 => write!(f, "entry names must be UTF-8"),
            Rule::Symlink { target } => write!(f, "symbolic links are not allowed (it points to `{target}`)"),
            Rule::HardLink { target } => write!(f, "hard links are not allowed (it links to `{target}`)"),
            Rule::Device => write!(f, "device files are not allowed"),
            Rule::Fifo => write!(f, "fifos are not allowed"),
            Rule::UnsupportedType(t) => {
                write!(
                    f,
                    "only regular files and directories are allowed (tar type {:?})",
                    char::from(*t)
                )
            }
            Rule::OutsidePrefix { prefix } => write!(f, "entry is not inside `{prefix}/`"),
            Rule::TooManyEntries { limit } => write!(f, "the archive has more than {limit} entries"),
            Rule::FileTooLarge { size, limit } => {
                write!(f, "file is {size} bytes, more than the limit of {limit} bytes")
            }
            Rule::TotalTooLarge { limit } => write!(f, "the files add up to more than {limit} bytes"),
            Rule::Duplicate => write!(f, "the path was already extracted (duplicate entry)"),
            Rule::UnsafeExistingPath => {
                write!(
                    f,
                    "a parent of this path exists in the destination and is not a plain directory"
                )
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("refused tar entry `{entry}`: {rule}")]
    Refused { entry: String, rule: Rule },
    #[error("reading the archive: {0}")]
    Archive(#[source] io::Error),
    #[error("writing `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ExtractError {
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            ExtractError::Refused { rule, .. } => Some(rule),
            _ => None,
        }
    }
}

/// What to do with one entry once it has been judged safe.
enum Plan {
    Skip,
    Dir(PathBuf),
    File(PathBuf),
}

/// Extracts `reader` (an uncompressed tar) into `dest`, stripping the top directory
/// `strip_prefix` (the name Docker puts first when archiving a directory; empty for none).
///
/// On error, files written so far stay under `dest`: callers extract into a staging
/// directory and discard it.
pub fn extract(
    reader: impl Read,
    dest: &Path,
    strip_prefix: &str,
    limits: &Limits,
) -> Result<ExtractReport, ExtractError> {
    create_dir(dest).map_err(|source| ExtractError::Write {
        path: dest.to_owned(),
        source,
    })?;
    let mut archive = tar::Archive::new(Counted {
        inner: reader,
        bytes: 0,
    });
    let mut report = ExtractReport::default();
    std::thread::scope(|scope| {
        let writer = Writer::start(scope, COPY_BUFFER);
        let read = read_entries(&mut archive, dest, strip_prefix, limits, &writer, &mut report);
        // A failed write is what stopped the reading, whatever the reader saw next.
        let digests = writer
            .finish()
            .map_err(|(path, source)| ExtractError::Write { path, source })?;
        read?;
        for (file, sha256) in report.files.iter_mut().zip(digests) {
            file.sha256 = sha256;
        }
        Ok::<_, ExtractError>(())
    })?;
    report.archive_bytes = archive.into_inner().bytes;
    Ok(report)
}

fn read_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    dest: &Path,
    strip_prefix: &str,
    limits: &Limits,
    writer: &Writer<'_>,
    report: &mut ExtractReport,
) -> Result<(), ExtractError> {
    let mut entries_seen: u64 = 0;
    for entry in archive.entries().map_err(ExtractError::Archive)? {
        let mut entry = entry.map_err(ExtractError::Archive)?;
        entries_seen += 1;
        let name = entry_name(&entry);
        if entries_seen > limits.max_entries {
            return Err(refused(
                &name,
                Rule::TooManyEntries {
                    limit: limits.max_entries,
                },
            ));
        }
        match plan_entry(&entry, &name, strip_prefix)? {
            Plan::Skip => {}
            Plan::Dir(rel) => {
                make_dirs(dest, &rel, &name)?;
                report.dirs.push(rel);
            }
            Plan::File(rel) => {
                // `size()` honours PAX size records, unlike the raw header field.
                let size = entry.size();
                check_size(&name, size, report.total_bytes, limits)?;
                if let Some(parent) = rel.parent() {
                    make_dirs(dest, parent, &name)?;
                }
                write_file(&mut entry, &dest.join(&rel), &name, size, writer)?;
                report.total_bytes += size;
                report.files.push(ExtractedFile {
                    path: rel,
                    size,
                    sha256: String::new(),
                });
            }
        }
    }
    Ok(())
}

/// Counts what the archive reader consumed.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

fn refused(entry: &str, rule: Rule) -> ExtractError {
    ExtractError::Refused {
        entry: entry.to_owned(),
        rule,
    }
}

fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> String {
    String::from_utf8_lossy(&entry.path_bytes()).into_owned()
}

/// Judges one entry by its type and name, before anything touches the disk.
fn plan_entry<R: Read>(entry: &tar::Entry<'_, R>, name: &str, strip_prefix: &str) -> Result<Plan, ExtractError> {
    let kind = entry.header().entry_type();
    let is_dir = match kind {
        EntryType::Regular | EntryType::Continuous => false,
        EntryType::Directory => true,
        // Metadata-only records (tar crate folds PAX/GNU name records into the next entry).
        EntryType::XGlobalHeader => return Ok(Plan::Skip),
        EntryType::Symlink => {
            return Err(refused(
                name,
                Rule::Symlink {
                    target: link_target(entry),
                },
            ))
        }
        EntryType::Link => {
            return Err(refused(
                name,
                Rule::HardLink {
                    target: link_target(entry),
                },
            ))
        }
        EntryType::Char | EntryType::Block => return Err(refused(name, Rule::Device)),
        EntryType::Fifo => return Err(refused(name, Rule::Fifo)),
        other => return Err(refused(name, Rule::UnsupportedType(other.as_byte()))),
    };
    let raw = entry.path_bytes();
    let path = std::str::from_utf8(&raw).map_err(|_| refused(name, Rule::NotUtf8))?;
    let rel = safe_relative(path).map_err(|rule| refused(name, rule))?;
    let rel = strip(&rel, strip_prefix).ok_or_else(|| {
        refused(
            name,
            Rule::OutsidePrefix {
                prefix: strip_prefix.to_owned(),
            },
        )
    })?;
    Ok(match (rel.as_os_str().is_empty(), is_dir) {
        // The archived directory itself is `dest`.
        (true, true) => Plan::Skip,
        // Docker archived a single file: keep its own name.
        (true, false) => Plan::File(PathBuf::from(strip_prefix)),
        (false, true) => Plan::Dir(rel),
        (false, false) => Plan::File(rel),
    })
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> String {
    entry
        .link_name_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Normalises `a/./b//c` and refuses anything that could leave the destination.
fn safe_relative(path: &str) -> Result<PathBuf, Rule> {
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(Rule::ParentComponent),
            Component::RootDir | Component::Prefix(_) => return Err(Rule::AbsolutePath),
        }
    }
    Ok(out)
}

fn strip(rel: &Path, prefix: &str) -> Option<PathBuf> {
    if prefix.is_empty() {
        return Some(rel.to_owned());
    }
    rel.strip_prefix(prefix).ok().map(Path::to_path_buf)
}

fn check_size(name: &str, size: u64, total: u64, limits: &Limits) -> Result<(), ExtractError> {
    if size > limits.max_file_bytes {
        return Err(refused(
            name,
            Rule::FileTooLarge {
                size,
                limit: limits.max_file_bytes,
            },
        ));
    }
    if total.saturating_add(size) > limits.max_total_bytes {
        return Err(refused(
            name,
            Rule::TotalTooLarge {
                limit: limits.max_total_bytes,
            },
        ));
    }
    Ok(())
}

/// Creates `dest/rel` one component at a time, refusing to walk through anything that is
/// not a real directory (a symlink planted in `dest` would otherwise redirect writes).
fn make_dirs(dest: &Path, rel: &Path, name: &str) -> Result<(), ExtractError> {
    let mut current = dest.to_path_buf();
    for part in rel.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => return Err(refused(name, Rule::UnsafeExistingPath)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ExtractError::Write { path: current, source }),
        }
        create_dir(&current).map_err(|source| ExtractError::Write {
            path: current.clone(),
            source,
        })?;
    }
    Ok(())
}

fn create_dir(path: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.symlink_metadata()?.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    // The umask may have removed bits that the TFTP server needs.
    fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
}

/// Creates the entry's file and streams its bytes to the writer thread. `create_new`
/// (O_EXCL) never opens an existing file and never follows a symlink at the final component.
fn write_file(
    entry: &mut impl Read,
    path: &Path,
    name: &str,
    expected: u64,
    writer: &Writer<'_>,
) -> Result<(), ExtractError> {
    // The writer's own failure is reported by `Writer::finish`, with its path.
    let stopped = |Stopped| ExtractError::Write {
        path: path.to_owned(),
        source: io::Error::other("the writer thread stopped"),
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => refused(name, Rule::Duplicate),
            _ => ExtractError::Write {
                path: path.to_owned(),
                source: e,
            },
        })?;
    writer.open(file, path.to_owned(), FILE_MODE).map_err(stopped)?;
    let mut size: u64 = 0;
    loop {
        let mut buf = writer.buffer().map_err(stopped)?;
        let n = fill(entry, &mut buf).map_err(ExtractError::Archive)?;
        // An empty piece too: it hands the buffer back.
        writer.write(buf, n).map_err(stopped)?;
        if n == 0 {
            break;
        }
        size += n as u64;
    }
    if size != expected {
        return Err(ExtractError::Archive(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("entry `{name}` ended after {size} of {expected} bytes"),
        )));
    }
    writer.close().map_err(stopped)
}

/// Reads until `buf` is full or the entry ends; returns how many bytes it holds.
fn fill(entry: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match entry.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::collections::BTreeSet;

    /// Builds tar bytes entry by entry, writing names straight into the header so that
    /// hostile names (`..`, absolute) get through, as they would from a crafted image.
    struct TarBuilder {
        builder: tar::Builder<Vec<u8>>,
    }

    impl TarBuilder {
        fn new() -> Self {
            TarBuilder {
                builder: tar::Builder::new(Vec::new()),
            }
        }

        fn raw(mut self, name: &str, kind: EntryType, data: &[u8], link: Option<&str>) -> Self {
            let mut header = tar::Header::new_gnu();
            let field = &mut header.as_old_mut().name;
            field.fill(0);
            field[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o600 });
            if let Some(link) = link {
                let field = &mut header.as_old_mut().linkname;
                field[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_cksum();
            self.builder.append(&header, data).unwrap();
            self
        }

        fn dir(self, name: &str) -> Self {
            self.raw(name, EntryType::Directory, b"", None)
        }

        fn file(self, name: &str, data: &[u8]) -> Self {
            self.raw(name, EntryType::Regular, data, None)
        }

        fn finish(self) -> Vec<u8> {
            self.builder.into_inner().unwrap()
        }
    }

    /// A parent directory holding only `dest`, so that anything written elsewhere shows up.
    struct Sandbox {
        root: tempfile::TempDir,
    }

    impl Sandbox {
        fn new() -> Self {
            Sandbox {
                root: tempfile::tempdir().unwrap(),
            }
        }

        fn dest(&self) -> PathBuf {
            self.root.path().join("staging")
        }

        fn run(&self, tar: &[u8], prefix: &str, limits: &Limits) -> Result<ExtractReport, ExtractError> {
            extract(tar, &self.dest(), prefix, limits)
        }

        /// Every path under the sandbox root, relative to it.
        fn tree(&self) -> BTreeSet<String> {
            fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
                for entry in fs::read_dir(dir).unwrap() {
                    let path = entry.unwrap().path();
                    out.insert(path.strip_prefix(root).unwrap().display().to_string());
                    if path.symlink_metadata().unwrap().is_dir() {
                        walk(&path, root, out);
                    }
                }
            }
            let mut out = BTreeSet::new();
            walk(self.root.path(), self.root.path(), &mut out);
            out
        }

        fn assert_nothing_outside_dest(&self) {
            for path in self.tree() {
                assert!(
                    path == "staging" || path.starts_with("staging/"),
                    "wrote outside dest: {path}"
                );
            }
        }
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn talos_tar() -> Vec<u8> {
        TarBuilder::new()
            .dir("arm64/")
            .file("arm64/vmlinuz", b"kernel bytes")
            .file("arm64/initramfs.xz", &[7u8; 100_000])
            .dir("arm64/extra/")
            .file("arm64/extra/./note.txt", b"hi")
            .finish()
    }

    #[test]
    fn extracts_files_with_sizes_hashes_and_modes() {
        let sandbox = Sandbox::new();
        let report = sandbox.run(&talos_tar(), "arm64", &Limits::default()).unwrap();
        let dest = sandbox.dest();

        let kernel = report.file("vmlinuz").unwrap();
        assert_eq!(kernel.size, 12);
        assert_eq!(kernel.sha256, sha(b"kernel bytes"));
        let initramfs = report.file("initramfs.xz").unwrap();
        assert_eq!(initramfs.size, 100_000);
        assert_eq!(initramfs.sha256, sha(&[7u8; 100_000]));
        assert_eq!(report.file("extra/note.txt").unwrap().size, 2);
        assert_eq!(report.files.len(), 3);
        assert_eq!(report.dirs, vec![PathBuf::from("extra")]);
        assert_eq!(report.total_bytes, 100_014);

        assert_eq!(fs::read(dest.join("vmlinuz")).unwrap(), b"kernel bytes");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dest.join("vmlinuz")), 0o644, "archive said 0600; TFTP needs 0644");
        assert_eq!(mode(&dest.join("extra")), 0o755);
        assert_eq!(mode(&dest), 0o755);
        sandbox.assert_nothing_outside_dest();
    }

    #[test]
    fn empty_prefix_keeps_full_paths() {
        let sandbox = Sandbox::new();
        let report = sandbox.run(&talos_tar(), "", &Limits::default()).unwrap();
        assert!(report.file("arm64/vmlinuz").is_some());
    }

    #[test]
    fn single_file_archive_keeps_its_name() {
        let sandbox = Sandbox::new();
        let tar = TarBuilder::new().file("vmlinuz", b"k").finish();
        let report = sandbox.run(&tar, "vmlinuz", &Limits::default()).unwrap();
        assert_eq!(report.files[0].path, PathBuf::from("vmlinuz"));
    }

    type RuleCheck = fn(&Rule) -> bool;

    fn assert_refused(tar: &[u8], prefix: &str, limits: &Limits, entry: &str, expected: RuleCheck) -> Sandbox {
        let sandbox = Sandbox::new();
        let err = sandbox.run(tar, prefix, limits).unwrap_err();
        match &err {
            ExtractError::Refused { entry: got, rule } => {
                assert_eq!(got, entry, "{err}");
                assert!(expected(rule), "unexpected rule: {err}");
            }
            other => panic!("expected a refusal, got {other}"),
        }
        assert!(err.to_string().contains(entry), "error must name the entry: {err}");
        sandbox.assert_nothing_outside_dest();
        sandbox
    }

    #[test]
    fn refuses_parent_components() {
        for name in ["arm64/../../escaped", "../escaped", "arm64/a/../../../escaped"] {
            let tar = TarBuilder::new().dir("arm64/").file(name, b"pwned").finish();
            let sandbox = assert_refused(&tar, "arm64", &Limits::default(), name, |r| *r == Rule::ParentComponent);
            assert!(!sandbox.root.path().join("escaped").exists());
            assert!(!sandbox.root.path().parent().unwrap().join("escaped").exists());
        }
    }

    #[test]
    fn refuses_absolute_paths() {
        let sandbox_outside = tempfile::tempdir().unwrap();
        let target = sandbox_outside.path().join("absolute-escape");
        let name = target.to_str().unwrap().to_owned();
        let tar = TarBuilder::new().file(&name, b"pwned").finish();
        assert_refused(&tar, "", &Limits::default(), &name, |r| *r == Rule::AbsolutePath);
        assert!(!target.exists());
    }

    #[test]
    fn refuses_links_devices_and_fifos() {
        let cases: Vec<(EntryType, RuleCheck)> = vec![
            (
                EntryType::Symlink,
                |r| matches!(r, Rule::Symlink { target } if target == "/etc/passwd"),
            ),
            (
                EntryType::Link,
                |r| matches!(r, Rule::HardLink { target } if target == "/etc/passwd"),
            ),
            (EntryType::Char, |r| *r == Rule::Device),
            (EntryType::Block, |r| *r == Rule::Device),
            (EntryType::Fifo, |r| *r == Rule::Fifo),
            (EntryType::new(b'Z'), |r| matches!(r, Rule::UnsupportedType(b'Z'))),
        ];
        for (kind, expected) in cases {
            let tar = TarBuilder::new()
                .dir("arm64/")
                .raw("arm64/vmlinuz", kind, b"", Some("/etc/passwd"))
                .file("arm64/after", b"never written")
                .finish();
            let sandbox = assert_refused(&tar, "arm64", &Limits::default(), "arm64/vmlinuz", expected);
            assert!(!sandbox.dest().join("vmlinuz").exists(), "{kind:?} was materialised");
            assert!(
                !sandbox.dest().join("after").exists(),
                "extraction went on after {kind:?}"
            );
        }
    }

    #[test]
    fn symlink_then_file_through_it_cannot_escape() {
        // The classic two-step attack: plant a link, then write through it.
        let outside = tempfile::tempdir().unwrap();
        let tar = TarBuilder::new()
            .raw(
                "arm64/link",
                EntryType::Symlink,
                b"",
                Some(outside.path().to_str().unwrap()),
            )
            .file("arm64/link/pwned", b"x")
            .finish();
        assert_refused(&tar, "arm64", &Limits::default(), "arm64/link", |r| {
            matches!(r, Rule::Symlink { .. })
        });
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_entries_outside_the_prefix() {
        let tar = TarBuilder::new().file("amd64/vmlinuz", b"k").finish();
        assert_refused(&tar, "arm64", &Limits::default(), "amd64/vmlinuz", |r| {
            matches!(r, Rule::OutsidePrefix { .. })
        });
    }

    #[test]
    fn refuses_duplicates_instead_of_overwriting() {
        let tar = TarBuilder::new()
            .file("arm64/vmlinuz", b"first")
            .file("arm64/vmlinuz", b"second")
            .finish();
        let sandbox = assert_refused(&tar, "arm64", &Limits::default(), "arm64/vmlinuz", |r| {
            *r == Rule::Duplicate
        });
        assert_eq!(fs::read(sandbox.dest().join("vmlinuz")).unwrap(), b"first");
    }

    #[test]
    fn refuses_to_walk_through_a_planted_symlink_in_dest() {
        let sandbox = Sandbox::new();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(sandbox.dest()).unwrap();
        std::os::unix::fs::symlink(outside.path(), sandbox.dest().join("sub")).unwrap();
        let tar = TarBuilder::new().file("arm64/sub/pwned", b"x").finish();
        let err = sandbox.run(&tar, "arm64", &Limits::default()).unwrap_err();
        assert_eq!(err.rule(), Some(&Rule::UnsafeExistingPath), "{err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn enforces_limits_before_writing() {
        let tar = talos_tar();
        let few = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        assert_refused(&tar, "arm64", &few, "arm64/initramfs.xz", |r| {
            *r == Rule::TooManyEntries { limit: 2 }
        });

        let small_files = Limits {
            max_file_bytes: 1000,
            ..Limits::default()
        };
        let sandbox = assert_refused(&tar, "arm64", &small_files, "arm64/initramfs.xz", |r| {
            *r == Rule::FileTooLarge {
                size: 100_000,
                limit: 1000,
            }
        });
        assert!(!sandbox.dest().join("initramfs.xz").exists());

        let small_total = Limits {
            max_total_bytes: 50_000,
            ..Limits::default()
        };
        assert_refused(&tar, "arm64", &small_total, "arm64/initramfs.xz", |r| {
            *r == Rule::TotalTooLarge { limit: 50_000 }
        });
    }

    #[test]
    fn refuses_non_utf8_names() {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..4].copy_from_slice(b"a\xffb\xfe");
        header.set_size(0);
        header.set_entry_type(EntryType::Regular);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b""[..]).unwrap();
        let sandbox = Sandbox::new();
        let err = sandbox
            .run(&builder.into_inner().unwrap(), "", &Limits::default())
            .unwrap_err();
        assert_eq!(err.rule(), Some(&Rule::NotUtf8));
    }

    #[test]
    fn long_names_via_gnu_records_are_still_checked() {
        // `append_data` writes a GNU long-name record; the tar crate folds it into the entry.
        let long = format!("arm64/{}/../../../escaped", "d".repeat(120));
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_entry_type(EntryType::Regular);
        // `append_data` refuses `..` itself, so write the long-name record by hand.
        let mut long_header = tar::Header::new_gnu();
        long_header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        long_header.set_entry_type(EntryType::GNULongName);
        long_header.set_size(long.len() as u64 + 1);
        long_header.set_cksum();
        let mut name_bytes = long.clone().into_bytes();
        name_bytes.push(0);
        builder.append(&long_header, &name_bytes[..]).unwrap();
        header.as_old_mut().name[..5].copy_from_slice(b"short");
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        assert_refused(
            &builder.into_inner().unwrap(),
            "arm64",
            &Limits::default(),
            &long,
            |r| *r == Rule::ParentComponent,
        );
    }

    #[test]
    fn garbage_and_truncated_archives_are_refused_without_panicking() {
        let sandbox = Sandbox::new();
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        assert!(sandbox.run(&garbage, "", &Limits::default()).is_err());

        let tar = talos_tar();
        // Cut inside a header, inside a file's data, inside a file's padding: an error, never
        // a shorter tree.
        for cut in [100, 700, 1030, 5000, tar.len() - 1500] {
            let sandbox = Sandbox::new();
            let result = sandbox.run(&tar[..cut], "arm64", &Limits::default());
            assert!(
                result.is_err(),
                "a cut at {cut} of {} was accepted: {result:?}",
                tar.len()
            );
            sandbox.assert_nothing_outside_dest();
        }
        // A cut exactly between two entries reads as a shorter archive (tar has no length up
        // front): what was extracted is whole, and the file that never came is missing, which
        // `up`'s required-file check refuses.
        for (cut, whole) in [(512, 0), (1536, 1)] {
            let sandbox = Sandbox::new();
            let report = sandbox.run(&tar[..cut], "arm64", &Limits::default()).unwrap();
            assert_eq!(report.files.len(), whole, "cut at {cut}: {report:?}");
            assert!(report.file("initramfs.xz").is_none());
            for f in &report.files {
                assert_eq!(f.size, fs::metadata(sandbox.dest().join(&f.path)).unwrap().len());
            }
            sandbox.assert_nothing_outside_dest();
        }
    }

    #[test]
    fn empty_archive_is_an_empty_report() {
        let sandbox = Sandbox::new();
        let report = sandbox.run(&[][..], "arm64", &Limits::default()).unwrap();
        assert!(report.files.is_empty());
        assert!(sandbox.dest().is_dir());
    }
}
