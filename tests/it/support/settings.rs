//! Settings resolved from `cozyboot render` flags exactly as the CLI resolves them, but with
//! a given host and no process environment, so tests do not depend on the machine.

use clap::Parser;
use cozyboot::cli::{Cli, Command};
use cozyboot::error::Error;
use cozyboot::settings::{self, net::HostNet, Purpose, Resolved, Settings};

pub fn resolve(flags: &[String], host: &dyn HostNet, purpose: Purpose) -> Result<Resolved, Error> {
    let argv = ["cozyboot".to_string(), "render".into()]
        .into_iter()
        .chain(flags.iter().cloned());
    let Command::Render(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!("the argv names the render command")
    };
    settings::resolve(settings::Inputs {
        config_file: None,
        env: &|_| None,
        flags: args.settings.to_raw(),
        host,
        purpose,
        site: &settings::no_site,
    })
}

/// Like [`resolve`], for flags that must be valid.
pub fn valid(flags: &[String], host: &dyn HostNet, purpose: Purpose) -> Settings {
    resolve(flags, host, purpose).unwrap_or_else(|e| panic!("{e}")).settings
}
