//! The `cozyboot` binary: parse, run, print, and map errors to exit codes.

use clap::Parser;
use cozyboot::cli::Cli;
use cozyboot::commands;
use cozyboot::error::{exit, Error};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match commands::run(cli) {
        Ok(output) => {
            let text = if json {
                serde_json::to_string_pretty(&output.json).expect("output serializes")
            } else {
                output.human
            };
            print_stdout(&text);
            // A report that answers "no" (validate's failing checks, nodes --wait short of
            // machines) is printed all the same: CI needs it most then.
            match output.failure {
                None => ExitCode::SUCCESS,
                Some(why) => {
                    eprintln!("error: {why} (exit {})", exit::FAILED);
                    ExitCode::from(exit::FAILED as u8)
                }
            }
        }
        Err(error) => {
            report(&error, json);
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`cozyboot render | head`) is not an error worth a panic.
    let _ = writeln!(out, "{}", text.trim_end_matches('\n'));
}

fn report(error: &Error, json: bool) {
    if json {
        let problems = match error {
            Error::Config(list) => serde_json::to_value(list).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        let doc = serde_json::json!({
            "error": { "kind": error.kind(), "exit_code": error.exit_code(), "message": error.to_string(), "problems": problems }
        });
        print_stdout(&serde_json::to_string_pretty(&doc).expect("error serializes"));
    }
    eprintln!("error: {error}");
}
