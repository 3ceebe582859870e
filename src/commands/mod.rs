//! One module per subcommand, named after it (`_command` added where a layer has the same
//! name: `render_command` beside `crate::render`); each returns an [`Output`] that `main` prints.

mod down;
mod export_bootbox;
mod logs;
mod managed;
mod nodes;
mod power;
pub mod render_command;
mod render_kubernetes;
mod restart;
mod smoke_command;
mod status;
mod up;
mod validate_command;

use crate::cli::{Cli, Command, SettingsArgs};
use crate::error::{Error, Result};
use crate::settings::{self, net::SystemNet, Purpose, Resolved};
use crate::site::{self, Registry};
use std::path::{Path, PathBuf};

/// What a command has to say, in both forms; `main` picks one. A command whose report is
/// its answer also when the answer is "no" (`validate` with failing checks, `nodes --wait`
/// short of machines) returns the report with a `failure`: printed all the same, then exit 1.
#[derive(Debug)]
pub struct Output {
    pub human: String,
    pub json: serde_json::Value,
    /// Why the command failed, in one line (for stderr), when it did.
    pub failure: Option<String>,
}

impl Output {
    pub fn new(human: String, json: serde_json::Value) -> Output {
        Output {
            human,
            json,
            failure: None,
        }
    }

    /// The same report, as the answer of a command that failed.
    pub fn failing(mut self, why: impl Into<String>) -> Output {
        self.failure = Some(why.into());
        self
    }
}

pub fn run(cli: Cli) -> Result<Output> {
    match cli.command {
        Command::Up(args) => up::run(&args, cli.config, cli.json),
        Command::Render(args) => render_command::run(&args, cli.config),
        Command::Validate(args) => validate_command::run(&args, cli.config),
        Command::Status(args) => status::run(&args),
        Command::Logs(args) => logs::run(&args),
        Command::Nodes(args) => nodes::run(&args, cli.config),
        Command::Power(args) => power::run(&args, cli.config),
        Command::Smoke(args) => smoke_command::run(&args, cli.config, cli.json),
        Command::Export(crate::cli::ExportTarget::Bootbox(args)) => export_bootbox::run(&args),
        Command::Restart(args) => restart::run(&args),
        Command::Down(args) => down::run(&args),
        Command::Completions(args) => Ok(completions(args.shell)),
    }
}

/// Docker calls are async; the CLI runs one command at a time on one runtime.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("starting the async runtime: {e}")))
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The host's registry of boot sites, for whoever runs cozyboot.
pub(crate) fn registry() -> Registry {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    Registry::locate(&env, is_root)
}

/// Resolves settings from the real process environment and the host's interfaces, over the
/// recorded site the other sources point at (see [`crate::site`]).
pub fn resolve(args: &SettingsArgs, config: Option<PathBuf>, purpose: Purpose) -> Result<Resolved> {
    let registry = registry();
    let find = |named: Option<&Path>| Ok(site::find(named, &registry)?.map(|(dir, r)| r.layer(&dir)));
    resolve_with(args, config, purpose, &find)
}

/// Resolves settings without any recorded site: what `up` is given is the whole site.
pub fn resolve_fresh(args: &SettingsArgs, config: Option<PathBuf>, purpose: Purpose) -> Result<Resolved> {
    resolve_with(args, config, purpose, &settings::no_site)
}

fn resolve_with(
    args: &SettingsArgs,
    config: Option<PathBuf>,
    purpose: Purpose,
    site: settings::FindSite<'_>,
) -> Result<Resolved> {
    settings::resolve(settings::Inputs {
        config_file: config,
        env: &env,
        flags: args.to_raw(),
        host: &SystemNet,
        purpose,
        site,
    })
}

fn completions(shell: clap_complete::Shell) -> Output {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cozyboot", &mut buf);
    let script = String::from_utf8_lossy(&buf).into_owned();
    let json = serde_json::json!({ "shell": shell.to_string(), "script": script });
    Output::new(script, json)
}

/// Fills a template from `templates/`; they are compiled in, so a broken one fails tests.
pub(crate) fn template(name: &str, source: &str, ctx: minijinja::Value) -> String {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(false);
    env.add_template(name, source).expect("templates are valid");
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .expect("templates render with the values the code passes")
}
