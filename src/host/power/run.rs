//! Running a power command: an argv (never a shell string), with a bounded wait, its output
//! kept for the report.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A BMC or a switch that does not answer in this long will not: ipmitool's own retries end
/// well within it.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `argv` with `env` added; its stdout on success, else an error with its stderr.
pub fn run(argv: &[String], env: &[(String, String)]) -> Result<String, String> {
    let (program, args) = argv.split_first().ok_or("an empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {} s and was killed",
                    TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(stdout.trim_end().to_string())
    } else {
        Err(format!(
            "{program} failed ({status}): {}",
            if stderr.trim().is_empty() {
                stdout.trim()
            } else {
                stderr.trim()
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_on_success_and_stderr_on_failure() {
        let argv = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            run(&argv(&["sh", "-c", "echo \"$X\""]), &[("X".into(), "on".into())]).unwrap(),
            "on"
        );
        let e = run(&argv(&["sh", "-c", "echo nope >&2; exit 3"]), &[]).unwrap_err();
        assert!(e.contains("nope") && e.contains("exit status: 3"), "{e}");
        assert!(run(&argv(&["/nonexistent/plug"]), &[])
            .unwrap_err()
            .contains("cannot run"));
    }
}
