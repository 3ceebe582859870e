//! One module per subcommand; each returns an [`Output`] that `main` prints.

mod day2;
pub mod render;
mod up;
mod validate;

use crate::cli::{Cli, Command, SettingsArgs};
use crate::error::{Error, Result};
use crate::settings::{self, net::SystemNet, Purpose, Resolved};
use std::path::PathBuf;

/// What a command has to say, in both forms; `main` picks one.
#[derive(Debug)]
pub struct Output {
    pub human: String,
    pub json: serde_json::Value,
}

pub fn run(cli: Cli) -> Result<Output> {
    match cli.command {
        Command::Up(args) => up::run(&args, cli.config, cli.json),
        Command::Render(args) => render::run(&args, cli.config),
        Command::Validate(args) => validate::run(&args, cli.config, cli.json),
        Command::Status(args) => day2::status(&args),
        Command::Logs(args) => day2::logs(&args),
        Command::Restart(args) => day2::restart(&args),
        Command::Down(args) => day2::down(&args),
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

/// Resolves settings from the real process environment and the host's interfaces.
pub fn resolve(args: &SettingsArgs, config: Option<PathBuf>, purpose: Purpose) -> Result<Resolved> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    settings::resolve(settings::Inputs {
        config_file: config,
        env: &env,
        flags: args.to_raw(),
        host: &SystemNet,
        purpose,
    })
}

fn completions(shell: clap_complete::Shell) -> Output {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cozyboot", &mut buf);
    let script = String::from_utf8_lossy(&buf).into_owned();
    Output {
        json: serde_json::json!({ "shell": shell.to_string(), "script": script }),
        human: script,
    }
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
