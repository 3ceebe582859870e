//! `cozyboot logs`: the managed containers' logs.

use super::managed::{scope, selected};
use super::{runtime, Output};
use crate::cli::LogsArgs;
use crate::engine::docker::Engine;
use crate::error::{Error, Result};
use serde_json::json;

pub fn run(args: &LogsArgs) -> Result<Output> {
    runtime()?.block_on(async {
        let dir = scope(&args.site)?;
        let engine = Engine::connect().await?;
        let found = selected(&engine, dir.as_deref(), args.role).await?;
        if args.follow {
            let [(_, c)] = found.as_slice() else {
                return Err(Error::Config(vec![crate::error::ConfigError::new(
                    "logs",
                    "--follow follows one container",
                    "name it: `cozyboot logs matchbox -f` or `cozyboot logs dnsmasq -f`",
                )]));
            };
            engine.follow_logs(&c.name, args.tail, &mut tokio::io::stdout()).await?;
            return Ok(Output::new(String::new(), json!(null)));
        }
        let mut human = String::new();
        let mut doc = serde_json::Map::new();
        for (role, c) in &found {
            let text = engine.logs(&c.name, args.tail).await?;
            if found.len() > 1 {
                human.push_str(&format!("==> {} ({}) <==\n", c.name, role.name()));
            }
            human.push_str(&text);
            doc.insert(role.name().to_string(), json!(text));
        }
        Ok(Output::new(human, serde_json::Value::Object(doc)))
    })
}
