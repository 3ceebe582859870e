//! Benchmark helper for `bench/run`, not a user tool: runs one extraction as cozyboot does it
//! and nothing else, so that its wall time and peak RSS can be put beside `docker create` +
//! `docker cp` + `docker rm` of the same directory.
//!
//! ```text
//! extract_bench --talos IMAGE DEST        what `cozyboot up` runs: Engine::export_files with
//!                                         the arm64 Talos layouts (stat the layout's files,
//!                                         copy the first complete set, side by side)
//! extract_bench IMAGE DEST PATH [PATH...] Engine::export_dir: a whole directory tree
//! ```
//!
//! Both create a never-started container, stream the engine's archives through the
//! extractor with the default limits, and remove the container.
//!
//! Prints one JSON line: files, bytes, source path, milliseconds. The runtime is the one the
//! CLI builds (multi-threaded, 2 workers).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use cozyboot::artifacts::arch::Arch;
use cozyboot::artifacts::layout::file_sets;
use cozyboot::engine::docker::Engine;
use cozyboot::engine::extract::Limits;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let talos = args.first().is_some_and(|a| a == "--talos");
    if talos {
        args.remove(0);
    }
    if args.len() < 2 || (!talos && args.len() < 3) {
        eprintln!("usage: extract_bench --talos IMAGE DEST | extract_bench IMAGE DEST PATH [PATH...]");
        std::process::exit(2);
    }
    let (image, dest) = (&args[0], PathBuf::from(&args[1]));
    let paths: Vec<&str> = args[2..].iter().map(String::as_str).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let started = Instant::now();
    let report = runtime.block_on(async {
        let engine = Engine::connect().await.context("connecting to the Docker Engine")?;
        let report = if talos {
            let sets = file_sets(Arch::Arm64);
            engine
                .export_files(image, &sets, &dest, &Limits::default())
                .await
                .map(|exported| exported.report)
        } else {
            engine.export_dir(image, &paths, &dest, &Limits::default()).await
        };
        report.with_context(|| format!("extracting {image} into {}", dest.display()))
    })?;
    let elapsed = started.elapsed();
    println!(
        "{}",
        serde_json::json!({
            "files": report.files.len(),
            "bytes": report.total_bytes,
            "source": report.source_path,
            "ms": elapsed.as_secs_f64() * 1000.0,
        })
    );
    Ok(())
}
