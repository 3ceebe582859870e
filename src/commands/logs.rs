//! `cozyboot logs`: the managed containers' logs.

use super::managed::{scope, selected};
use super::{runtime, Output};
use crate::cli::LogsArgs;
use crate::engine::docker::{ContainerInfo, Engine};
use crate::error::{Error, Result};
use crate::render::containers::{Role, LABEL_DATA_DIR};
use crate::render::log_level::Shown;
use crate::settings::{choice::Choice, LogLevel};
use crate::site;
use serde_json::json;
use std::path::Path;

pub fn run(args: &LogsArgs) -> Result<Output> {
    if let Some(level) = &args.log_level {
        LogLevel::parse(level).map_err(|problem| {
            Error::Config(vec![crate::error::ConfigError::new(
                "log-level",
                problem,
                LogLevel::fix(),
            )
            .value(level)])
        })?;
    }
    runtime()?.block_on(async {
        let dir = scope(&args.site)?;
        let engine = Engine::connect().await?;
        let found = selected(&engine, dir.as_deref(), args.role).await?;
        if args.follow {
            let [(role, c)] = found.as_slice() else {
                return Err(Error::Config(vec![crate::error::ConfigError::new(
                    "logs",
                    "--follow follows one container",
                    "name it: `cozyboot logs matchbox -f` or `cozyboot logs dnsmasq -f`",
                )]));
            };
            match hidden_below(args, *role, c) {
                Some(shown) => follow_shown(&engine, &c.name, args.tail, shown).await?,
                None => engine.follow_logs(&c.name, args.tail, &mut tokio::io::stdout()).await?,
            }
            return Ok(Output::new(String::new(), json!(null)));
        }
        let mut human = String::new();
        let mut doc = serde_json::Map::new();
        for (role, c) in &found {
            let text = match hidden_below(args, *role, c) {
                // The tail is taken of the lines shown, so all are read.
                Some(shown) => shown.filter(&engine.logs(&c.name, None).await?, args.tail),
                None => engine.logs(&c.name, args.tail).await?,
            };
            if found.len() > 1 {
                human.push_str(&format!("==> {} ({}) <==\n", c.name, role.name()));
            }
            human.push_str(&text);
            doc.insert(role.name().to_string(), json!(text));
        }
        Ok(Output::new(human, serde_json::Value::Object(doc)))
    })
}

/// Which of matchbox's lines `logs` shows, when it leaves some out: by `--log-level`, else
/// by the log-level its site was brought up with (the record in the data dir the container
/// is labelled with). matchbox itself logs at info, which `nodes` and `validate` read (see
/// [`crate::render::log_level`]). dnsmasq's lines are all shown.
fn hidden_below(args: &LogsArgs, role: Role, c: &ContainerInfo) -> Option<Shown> {
    if role != Role::Matchbox {
        return None;
    }
    let recorded = || {
        let dir = c.labels.get(LABEL_DATA_DIR)?;
        let record = site::load(Path::new(dir)).ok()??;
        Some(record.value("log-level").to_string())
    };
    let setting = args.log_level.clone().or_else(recorded)?;
    Some(Shown::at(&setting)).filter(|s| s.hides_any())
}

/// Follows a container's logs, printing each line once it is complete and only if `shown`
/// keeps it.
async fn follow_shown(engine: &Engine, name: &str, tail: Option<usize>, shown: Shown) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (mut into, out_of) = tokio::io::duplex(64 * 1024);
    let follow = async move {
        let followed = engine.follow_logs(name, tail, &mut into).await;
        // Closing the pipe ends the printer's reading.
        drop(into);
        followed
    };
    // When printing fails (stdout closed), the pipe's reader goes with it, which stops the
    // follower's next write instead of leaving it blocked on a full pipe.
    let print = async move {
        let mut lines = BufReader::new(out_of);
        let mut stdout = tokio::io::stdout();
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).await? > 0 {
            if shown.shows(&String::from_utf8_lossy(&line)) {
                stdout.write_all(&line).await?;
                stdout.flush().await?;
            }
            line.clear();
        }
        Ok::<(), std::io::Error>(())
    };
    let (followed, printed) = tokio::join!(follow, print);
    printed.map_err(|e| Error::Failed(format!("printing the logs of {name}: {e}")))?;
    Ok(followed?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn logs_refuses_a_level_that_is_none_before_asking_the_engine() {
        let cli = crate::cli::Cli::try_parse_from(["cozyboot", "logs", "matchbox", "--log-level", "loud"]).unwrap();
        let crate::cli::Command::Logs(args) = cli.command else {
            panic!("parsed as logs");
        };
        // The engine is never asked: the error comes first, whether or not one is running.
        let Err(Error::Config(problems)) = run(&args) else {
            panic!("a configuration error");
        };
        assert_eq!(problems.len(), 1);
        let p = &problems[0];
        assert_eq!((p.field.as_str(), p.value.as_deref()), ("log-level", Some("loud")));
        assert!(p.problem.contains("unknown matchbox log level"), "{p:?}");
        assert!(p.fix.contains("'warn'"), "{p:?}");
    }
}
