//! `cozyboot nodes`: read both containers' logs (and the journal of earlier ones), fold them
//! into one journey per machine, try Talos's port on the machines that got their initramfs,
//! and print where each one stopped. `--wait` turns it into a gate for CI. A Talos config
//! whose machine took it and answers on TCP 50000 is withdrawn from matchbox here (see
//! [`crate::store::withdrawal`]), on every look, `--wait` and `--watch` included.

use super::{managed, resolve, runtime, Output};
use crate::artifacts::arch::Arch;
use crate::cli::{NodesArgs, SettingsArgs};
use crate::engine::docker::Engine;
use crate::error::Result;
use crate::journey::diagnosis::Site;
use crate::journey::event::{Event, Source};
use crate::journey::journal::Journal;
use crate::journey::model::{self, Journey, Mark, Stage};
use crate::journey::powered::PowerOns;
use crate::journey::report::Report;
use crate::journey::{clock, dnsmasq_log, matchbox_log};
use crate::render::containers::Role;
use crate::settings::{Purpose, Settings};
use crate::store::withdrawal;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Talos's API (apid) in maintenance mode.
const TALOS_PORT: u16 = 50000;
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const WAIT_POLL: Duration = Duration::from_secs(5);
const WATCH_POLL: Duration = Duration::from_secs(2);

pub fn run(args: &NodesArgs, config: Option<PathBuf>) -> Result<Output> {
    let dir = managed::scope(&args.site)?;
    let (settings, mut notes) = settings_of(dir.as_deref(), config);
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        loop {
            let mut report = gather(&engine, dir.as_deref(), settings.as_ref(), !args.no_probe).await?;
            report.notes.splice(0..0, notes.drain(..));
            if args.watch {
                redraw(&report);
                // The table is on the screen already; `--json` still gets the last document.
                let drawn = Output::new(String::new(), report.to_json());
                if Instant::now() >= deadline {
                    return Ok(drawn);
                }
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_POLL) => continue,
                    _ = tokio::signal::ctrl_c() => return Ok(drawn),
                }
            }
            let output = Output::new(report.to_human(), report.to_json());
            let Some(want) = args.wait else { return Ok(output) };
            let got = report.reached(args.stage);
            if got >= want {
                return Ok(output);
            }
            if Instant::now() >= deadline {
                let head = format!(
                    "{got} of {want} machine(s) reached `{}` within {} s; where each stopped:\n",
                    args.stage, args.timeout
                );
                return Ok(Output::new(head + &output.human, output.json)
                    .failing("not enough machines reached the stage in time"));
            }
            tokio::time::sleep(WAIT_POLL.min(deadline - Instant::now())).await;
        }
    })
}

/// On a terminal, clear and draw the board (one line a machine, cut to the screen); elsewhere
/// just print one full table after another.
fn redraw(report: &Report) {
    let mut out = std::io::stdout().lock();
    if out.is_terminal() {
        let (rows, cols) = console::Term::stdout().size_checked().unwrap_or((0, 0));
        let board = crate::journey::board::board(report, rows.into(), cols.into());
        let _ = write!(out, "\x1b[2J\x1b[H{board}");
    } else {
        let _ = writeln!(out, "{}", report.to_human());
    }
    let _ = out.flush();
}

/// The site's settings as `validate` resolves them. When they cannot be resolved (no site
/// recorded, an interface gone) the journeys are still worth showing: judged against both
/// architectures, with a note saying so.
fn settings_of(dir: Option<&Path>, config: Option<PathBuf>) -> (Option<Settings>, Vec<String>) {
    let args = SettingsArgs {
        data_dir: dir.map(Path::to_path_buf),
        ..SettingsArgs::default()
    };
    match resolve(&args, config, Purpose::Serve) {
        Ok(r) => (Some(r.settings), Vec::new()),
        Err(e) => (
            None,
            vec![format!(
                "the site's settings could not be resolved, so machines are judged as if every architecture were served: {}",
                e.to_string().lines().next().unwrap_or_default()
            )],
        ),
    }
}

/// What the site serves now: its settings less the configs withdrawn so far.
fn site_of(settings: Option<&Settings>) -> Site {
    let Some(s) = settings else {
        return Site {
            arches: Arch::ALL.to_vec(),
            config_for_all: false,
            config_macs: Vec::new(),
            http: "<server-ip>:8080".into(),
        };
    };
    let record = withdrawal::Record::load(&s.data_dir).unwrap_or_default();
    let (shared, macs) = withdrawal::withdrawn_of(s, &record);
    Site::of(s).without(shared, &macs)
}

/// Machines that fetched their config and whose Talos answers: their configs have done
/// their job and leave matchbox. A failure is a note: the table is still worth showing.
fn withdraw_taken(
    dir: &Path,
    settings: Option<&Settings>,
    journeys: &BTreeMap<String, Journey>,
    notes: &mut Vec<String>,
) {
    let taken: Vec<withdrawal::Taken> = journeys
        .values()
        .filter(|j| j.reached(Stage::Config) && j.reached(Stage::Talos))
        .map(|j| withdrawal::Taken {
            mac: j.mac.clone(),
            arch: j.ipxe_arch.clone(),
            ip: j.ip,
            fetched_at: j.stages.get(&Stage::Config).and_then(|m| m.at),
        })
        .collect();
    if taken.is_empty() {
        return;
    }
    match withdrawal::withdraw(dir, &taken) {
        Ok(lines) => {
            // U-Boot's script names the config URL for the same machines: rendered again
            // from the tree as it now is, so that no board is sent to a config withdrawn.
            let script = settings
                .filter(|_| !lines.is_empty())
                .map(withdrawal::rewrite_uboot_script);
            notes.extend(lines);
            if let Some(Err(e)) = script {
                notes.push(format!("U-Boot's boot script still names the withdrawn configs: {e}"));
            }
        }
        Err(e) => notes.push(format!(
            "Talos configs that machines took could not be withdrawn, so matchbox still serves them: {e}"
        )),
    }
}

async fn gather(engine: &Engine, dir: Option<&Path>, settings: Option<&Settings>, probe: bool) -> Result<Report> {
    let mut notes = Vec::new();
    let mut fresh: Vec<(Source, Vec<Event>)> = Vec::new();
    for (role, c) in managed::managed(engine, dir).await? {
        let text = match engine.logs_with_times(&c.name, None).await {
            Ok(t) => t,
            Err(e) => {
                notes.push(format!("the logs of {} could not be read: {e}", c.name));
                continue;
            }
        };
        fresh.push(match role {
            Role::Dnsmasq => (Source::Dnsmasq, dnsmasq_log::events(&text)),
            Role::Matchbox => (Source::Matchbox, matchbox_log::events(&text)),
        });
    }
    if fresh.is_empty() {
        notes.push("no running containers of this site: showing what the journal kept".into());
    }
    let events = match dir {
        Some(dir) => through_journal(dir, fresh, &mut notes),
        None => fresh.into_iter().flat_map(|(_, e)| e).collect(),
    };
    let mut journeys = model::fold(events);
    if let Some(dir) = dir {
        add_sizes(&mut journeys, &dir.join("assets"));
    }
    if probe {
        probe_talos(&mut journeys).await;
    }
    if let Some(dir) = dir {
        withdraw_taken(dir, settings, &journeys, &mut notes);
    }
    let mut report = Report::build(journeys, &site_of(settings), clock::now());
    if let Some(s) = settings {
        report.declared = super::power::by_mac(&s.machines);
    }
    if let Some(dir) = dir {
        match PowerOns::load(dir) {
            Ok(p) => report.powered_on = p.at,
            Err(e) => notes.push(e),
        }
    }
    report.notes = notes;
    Ok(report)
}

/// Merges what was read into the journal and returns all it holds; a journal that cannot be
/// read or written costs only the memory of older containers, so it is a note, not a failure.
fn through_journal(dir: &Path, fresh: Vec<(Source, Vec<Event>)>, notes: &mut Vec<String>) -> Vec<Event> {
    let mut journal = match Journal::load(dir) {
        Ok(j) => j,
        Err(e) => {
            notes.push(e);
            return fresh.into_iter().flat_map(|(_, e)| e).collect();
        }
    };
    for (source, events) in fresh {
        journal.merge(source, events);
    }
    if let Err(e) = journal.save(dir) {
        notes.push(format!("{e} (machines of replaced containers will be forgotten)"));
    }
    journal.events()
}

/// dnsmasq does not log the size of what it sent; the file in the TFTP root tells it.
fn add_sizes(journeys: &mut BTreeMap<String, Journey>, tftp_root: &Path) {
    for j in journeys.values_mut() {
        if let Some(m) = j.stages.get_mut(&Stage::Tftp) {
            let path: PathBuf = tftp_root.join(&m.detail);
            if let Ok(meta) = std::fs::metadata(&path) {
                m.detail = format!("{} ({} bytes)", m.detail, meta.len());
            }
        }
    }
}

/// TCP 50000 on each machine that fetched its initramfs: Talos in maintenance mode answers.
/// Only addresses dnsmasq handed out or saw are tried, each once, with a short timeout.
async fn probe_talos(journeys: &mut BTreeMap<String, Journey>) {
    let targets: Vec<(String, Ipv4Addr)> = journeys
        .values()
        .filter(|j| j.reached(Stage::Initramfs))
        .filter_map(|j| Some((j.mac.clone(), j.ip?)))
        .collect();
    let probes = targets.into_iter().map(|(mac, ip)| async move {
        let addr = SocketAddr::from((ip, TALOS_PORT));
        let open = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        );
        (mac, open)
    });
    for (mac, open) in futures_util::future::join_all(probes).await {
        if let (true, Some(j)) = (open, journeys.get_mut(&mac)) {
            j.stages.insert(
                Stage::Talos,
                Mark {
                    at: Some(clock::now()),
                    detail: format!("tcp/{TALOS_PORT} open"),
                },
            );
        }
    }
}
