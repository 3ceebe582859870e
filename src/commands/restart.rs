//! `cozyboot restart`: the managed containers restarted in place.

use super::managed::{managed, scope, selected};
use super::{runtime, Output};
use crate::cli::RestartArgs;
use crate::engine::docker::Engine;
use crate::error::Result;
use crate::render::containers::Role;
use serde_json::json;
use std::time::Duration;

pub fn run(args: &RestartArgs) -> Result<Output> {
    runtime()?.block_on(async {
        let dir = scope(&args.site)?;
        let engine = Engine::connect().await?;
        let mut found = selected(&engine, dir.as_deref(), args.role).await?;
        // A dnsmasq in matchbox's network namespace loses its network when matchbox restarts.
        if found.iter().any(|(r, _)| *r == Role::Matchbox) && !found.iter().any(|(r, _)| *r == Role::Dnsmasq) {
            let followers = managed(&engine, dir.as_deref())
                .await?
                .into_iter()
                .filter(|(r, c)| *r == Role::Dnsmasq && c.network_mode.starts_with("container:"));
            found.extend(followers);
        }
        let mut done = Vec::new();
        // matchbox first: dnsmasq may share its network namespace.
        for (_, c) in &found {
            engine.stop(&c.name, Duration::from_secs(10)).await?;
            engine.start(&c.name).await?;
            engine.wait_running(&c.name, Duration::from_secs(20)).await?;
            done.push(c.name.clone());
        }
        Ok(Output::new(
            format!("restarted {}", done.join(", ")),
            json!({ "restarted": done }),
        ))
    })
}
