//! The `cozyboot` binary: parse, run, print, and map errors to exit codes.

use clap::Parser;
use cozyboot::cli::Cli;
use cozyboot::commands;
use cozyboot::error::Error;
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
            ExitCode::SUCCESS
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
    // `validate`'s report (table or JSON document) is its output, failing or not.
    if let Error::ChecksFailed(rendered) = error {
        print_stdout(rendered);
        eprintln!("error: validate found problems (exit {})", error.exit_code());
        return;
    }
    // `nodes --wait`: where each machine stopped is the output that matters.
    if let Error::NotReached(rendered) = error {
        print_stdout(rendered);
        eprintln!(
            "error: not enough machines reached the stage in time (exit {})",
            error.exit_code()
        );
        return;
    }
    // `smoke`: the journey, diagnosis and serial console (or the JSON report) are the output.
    if let Error::SmokeFailed(rendered) = error {
        print_stdout(rendered);
        eprintln!(
            "error: the machine did not reach the stage (exit {})",
            error.exit_code()
        );
        return;
    }
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
