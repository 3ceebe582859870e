//! What `up` tells the person watching, on stderr: the step it starts, pull progress (live
//! bars on a terminal, sparse lines elsewhere; the pulls of one `up` run together and share
//! one display) and download bars. One [`Printer`] is passed down, so that `--quiet` is
//! honoured in one place and tests can read what was printed.
//!
//! stdout is left alone so that `--json` output stays machine-readable.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::PullEvent;

/// A byte-count line per image at most this often: enough to show life in CI logs without
/// flooding them.
const LINE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// One live bar per layer (interactive terminals).
    Bars,
    /// Plain, throttled lines (pipes, CI, `--json`).
    Lines,
    Quiet,
}

impl ProgressMode {
    /// Bars when stderr is a terminal and the output is for people; lines otherwise.
    pub fn detect(json: bool, quiet: bool) -> Self {
        match (quiet, json || !io::stderr().is_terminal()) {
            (true, _) => ProgressMode::Quiet,
            (false, true) => ProgressMode::Lines,
            (false, false) => ProgressMode::Bars,
        }
    }
}

/// Where `up`'s progress goes and how it looks.
#[derive(Clone)]
pub struct Printer {
    mode: ProgressMode,
    out: Sink,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Printer {
    /// Progress on stderr, as `mode` says.
    pub fn stderr(mode: ProgressMode) -> Self {
        Printer {
            mode,
            out: Sink(Arc::new(Mutex::new(Box::new(io::stderr())))),
        }
    }

    /// Lines into `out` (tests, and anything that keeps a log of its own).
    pub fn lines_to(out: Box<dyn Write + Send>) -> Self {
        Printer {
            mode: ProgressMode::Lines,
            out: Sink(Arc::new(Mutex::new(out))),
        }
    }

    pub fn quiet() -> Self {
        Printer::stderr(ProgressMode::Quiet)
    }

    /// One line, unless quiet. Best effort: a closed stderr must not fail the work.
    pub fn line(&self, text: &str) {
        if self.mode != ProgressMode::Quiet {
            let _ = writeln!(self.out.clone(), "{text}");
        }
    }

    /// One display for the pulls of a run.
    pub fn pulls(&self) -> PullProgress {
        match self.mode {
            ProgressMode::Bars => PullProgress {
                inner: Inner::Bars(Bars::new()),
            },
            ProgressMode::Lines => PullProgress {
                inner: Inner::Lines(Lines::new(Box::new(self.out.clone()))),
            },
            ProgressMode::Quiet => PullProgress { inner: Inner::Quiet },
        }
    }

    /// A bar for a download of `length` bytes, drawn only with live bars.
    pub fn download(&self, length: Option<u64>) -> ProgressBar {
        match self.mode {
            ProgressMode::Bars => ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr()),
            ProgressMode::Lines | ProgressMode::Quiet => ProgressBar::hidden(),
        }
    }
}

/// The printer's output, shared by its clones.
#[derive(Clone)]
struct Sink(Arc<Mutex<Box<dyn Write + Send>>>);

impl Sink {
    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Box<dyn Write + Send>>> {
        self.0.lock().map_err(|_| io::Error::other("progress output poisoned"))
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.lock()?.flush()
    }
}

pub struct PullProgress {
    inner: Inner,
}

enum Inner {
    Bars(Bars),
    Lines(Lines),
    Quiet,
}

impl PullProgress {
    pub fn on_event(&mut self, image: &str, event: PullEvent) {
        match &mut self.inner {
            Inner::Bars(bars) => bars.on_event(image, event),
            Inner::Lines(lines) => lines.on_event(image, event),
            Inner::Quiet => {}
        }
    }

    /// Clears whatever bars are still drawn (e.g. after a failed pull).
    pub fn finish(&mut self) {
        if let Inner::Bars(bars) = &mut self.inner {
            bars.clear();
        }
    }
}

impl Drop for PullProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// NO_COLOR (https://no-color.org): any non-empty value turns colour off.
fn colour_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

struct Bars {
    multi: MultiProgress,
    layers: HashMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    fn new() -> Self {
        let template = if colour_enabled() {
            "{prefix:.cyan} {msg:<18} [{bar:30.green/blue}] {bytes}/{total_bytes}"
        } else {
            "{prefix} {msg:<18} [{bar:30}] {bytes}/{total_bytes}"
        };
        // The templates are constants; the fallback only guards against an indicatif change.
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            layers: HashMap::new(),
            style,
        }
    }

    fn on_event(&mut self, image: &str, event: PullEvent) {
        let Some(layer) = event.layer.clone() else {
            // Failing to draw progress must never fail the pull.
            let _ = self.multi.println(format!("{image}: {}", event.status));
            return;
        };
        // The pulls run together: each bar says which image its layer belongs to (two images
        // may share a layer, which each pull reports on its own).
        let key = format!("{}:{layer}", short_name(image));
        if event.layer_done() {
            if let Some(bar) = self.layers.remove(&key) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            return;
        }
        let bar = self.layers.entry(key.clone()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::no_length().with_style(self.style.clone()));
            bar.set_prefix(key);
            bar
        });
        bar.set_message(event.status);
        if let Some(total) = event.total {
            bar.set_length(total);
        }
        if let Some(current) = event.current {
            bar.set_position(current);
        }
    }

    fn clear(&mut self) {
        for (_, bar) in self.layers.drain() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// The last path component of an image reference, with its tag: `talos:v1.10`.
fn short_name(image: &str) -> &str {
    image.rsplit('/').next().unwrap_or(image)
}

struct Lines {
    out: Box<dyn Write + Send>,
    last_bytes_line: HashMap<String, Instant>,
}

impl Lines {
    fn new(out: Box<dyn Write + Send>) -> Self {
        Lines {
            out,
            last_bytes_line: HashMap::new(),
        }
    }

    fn on_event(&mut self, image: &str, event: PullEvent) {
        if let Some(line) = self.line_for(image, &event) {
            // Progress output is best effort: a closed stderr must not fail the pull.
            let _ = writeln!(self.out, "pulling {image}: {line}");
        }
    }

    fn line_for(&mut self, image: &str, event: &PullEvent) -> Option<String> {
        let Some(layer) = &event.layer else {
            return Some(event.status.clone());
        };
        match event.status.as_str() {
            "Pull complete" => Some(format!("layer {layer} done")),
            "Already exists" => Some(format!("layer {layer} already present")),
            "Downloading" | "Extracting" => {
                let (current, total) = (event.current?, event.total?);
                let now = Instant::now();
                let due = self
                    .last_bytes_line
                    .get(image)
                    .is_none_or(|at| now.duration_since(*at) >= LINE_INTERVAL);
                if !due {
                    return None;
                }
                self.last_bytes_line.insert(image.to_owned(), now);
                let verb = event.status.to_lowercase();
                Some(format!(
                    "layer {layer} {verb} {} / {}",
                    HumanBytes(current),
                    HumanBytes(total)
                ))
            }
            // "Pulling fs layer", "Waiting", "Verifying Checksum", "Download complete": noise.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn event(layer: Option<&str>, status: &str, current: Option<u64>, total: Option<u64>) -> PullEvent {
        PullEvent {
            layer: layer.map(str::to_owned),
            status: status.to_owned(),
            current,
            total,
        }
    }

    #[test]
    fn lines_are_sparse_and_name_image_and_layer() {
        let captured = Captured::default();
        let mut progress = Printer::lines_to(Box::new(captured.clone())).pulls();
        let image = "ghcr.io/cozystack/talos:v1";
        progress.on_event(image, event(None, "Pulling from cozystack/talos", None, None));
        progress.on_event(image, event(Some("abc123"), "Pulling fs layer", None, None));
        progress.on_event(image, event(Some("abc123"), "Downloading", Some(1024), Some(4096)));
        progress.on_event(image, event(Some("abc123"), "Downloading", Some(2048), Some(4096)));
        progress.on_event(image, event(Some("abc123"), "Pull complete", None, None));
        progress.on_event(image, event(Some("def456"), "Already exists", None, None));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "pulling ghcr.io/cozystack/talos:v1: Pulling from cozystack/talos\n\
             pulling ghcr.io/cozystack/talos:v1: layer abc123 downloading 1.00 KiB / 4.00 KiB\n\
             pulling ghcr.io/cozystack/talos:v1: layer abc123 done\n\
             pulling ghcr.io/cozystack/talos:v1: layer def456 already present\n"
        );
    }

    #[test]
    fn quiet_and_hidden_bars_accept_events() {
        let mut quiet = Printer::quiet().pulls();
        quiet.on_event("x", event(Some("a"), "Downloading", Some(1), Some(2)));
        // Under `cargo test` stderr is captured, so bars draw nowhere; this exercises the
        // bookkeeping (creation, update, clear on done) without a terminal.
        let mut bars = Printer::stderr(ProgressMode::Bars).pulls();
        bars.on_event("x", event(None, "Pulling from x", None, None));
        bars.on_event("x", event(Some("a"), "Downloading", Some(1), Some(2)));
        bars.on_event("x", event(Some("b"), "Waiting", None, None));
        bars.on_event("x", event(Some("a"), "Pull complete", None, None));
        bars.on_event("y", event(Some("a"), "Downloading", Some(1), Some(2)));
        let Inner::Bars(inner) = &bars.inner else {
            panic!("ProgressMode::Bars must give bars");
        };
        assert_eq!(
            inner.layers.len(),
            2,
            "finished layers are cleared, each image has its own"
        );
        bars.finish();
    }

    #[test]
    fn lines_share_one_output_and_quiet_prints_nothing() {
        let captured = Captured::default();
        let printer = Printer::lines_to(Box::new(captured.clone()));
        printer.line("pull 3 images");
        printer
            .pulls()
            .on_event("x:1", event(None, "Pulling from x", None, None));
        printer.clone().line("start matchbox");
        assert!(printer.download(Some(10)).is_hidden(), "bars are for terminals only");
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "pull 3 images\npulling x:1: Pulling from x\nstart matchbox\n");

        let quiet = Printer::quiet();
        quiet.line("nothing");
        assert!(quiet.download(Some(10)).is_hidden());
    }
}
