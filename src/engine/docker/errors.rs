//! [`EngineError`] and the mapping of bollard's errors to it: every error names what was
//! being done and on which object, so callers can show it as is.

use std::error::Error as StdError;
use std::io;

use bollard::errors::Error as ApiError;

use crate::engine::extract::ExtractError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}", unreachable_message(host, detail))]
    Unreachable { host: String, detail: String },
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("pulling image {image} failed: {detail}")]
    Pull { image: String, detail: String },
    #[error("image {image} is not in the Docker Engine (pull it first)")]
    NoSuchImage { image: String },
    #[error("no container named {name}")]
    NoSuchContainer { name: String },
    #[error("container name {name} is taken: {detail}")]
    Conflict { name: String, detail: String },
    #[error("invalid container spec for {name}: {reason}")]
    InvalidSpec { name: String, reason: String },
    #[error("image {image} has none of these paths: {}", tried.join(", "))]
    NoCandidatePath { image: String, tried: Vec<String> },
    #[error("extracting {path} from image {image}: {source}")]
    Extract {
        image: String,
        path: String,
        #[source]
        source: ExtractError,
    },
    #[error("container {name} is not running (status {status}{}); last log lines:\n{logs}",
        exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default())]
    NotRunning {
        name: String,
        status: String,
        exit_code: Option<i64>,
        logs: String,
    },
    #[error("the Docker Engine runs on `{0}`; cozyboot supports amd64 and arm64 hosts")]
    UnsupportedArch(String),
    #[error("{action}: {detail}")]
    Api { action: String, detail: String },
    #[error("writing container logs: {0}")]
    Output(#[source] io::Error),
}

fn unreachable_message(host: &str, detail: &str) -> String {
    let env = match std::env::var("DOCKER_HOST") {
        Ok(value) if !value.is_empty() => format!("it is `{value}`"),
        _ => "it is unset".to_owned(),
    };
    format!(
        "cannot reach the Docker Engine at {host}: {detail}. Check that the Docker daemon is running \
         (e.g. `systemctl status docker`), that this user may use its socket (root, or a member of the \
         `docker` group), and that the DOCKER_HOST environment variable names the right engine ({env})"
    )
}

pub(super) fn status(err: &ApiError) -> Option<u16> {
    match err {
        ApiError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(super) fn is_missing_path(err: &ApiError) -> bool {
    // A 404 also answers a vanished container; only a missing path moves to the next candidate.
    status(err) == Some(404) && !detail(err).contains("No such container")
}

pub(super) fn api(action: impl Into<String>, err: ApiError) -> EngineError {
    EngineError::Api {
        action: action.into(),
        detail: detail(&err),
    }
}

pub(super) fn container_error(name: &str, action: String, err: ApiError) -> EngineError {
    match status(&err) {
        Some(404) if detail(&err).contains("No such container") => {
            EngineError::NoSuchContainer { name: name.to_owned() }
        }
        _ => api(action, err),
    }
}

pub(super) fn create_error(name: &str, image: &str, err: ApiError) -> EngineError {
    match status(&err) {
        Some(409) => EngineError::Conflict {
            name: name.to_owned(),
            detail: detail(&err),
        },
        Some(404) if detail(&err).contains("No such image") => EngineError::NoSuchImage {
            image: image.to_owned(),
        },
        _ => api(format!("creating container {name} from {image}"), err),
    }
}

/// The useful text of a bollard error: the engine's own message, or the cause chain.
pub(super) fn detail(err: &ApiError) -> String {
    match err {
        ApiError::DockerResponseServerError { message, .. } => message.trim().to_owned(),
        ApiError::DockerStreamError { error } => error.trim().to_owned(),
        ApiError::SocketNotFoundError(path) => format!("the socket {path} does not exist"),
        ApiError::RequestTimeoutError => "the engine did not answer in time".to_owned(),
        other => cause_chain(other),
    }
}

pub(super) fn cause_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_message_says_what_to_check() {
        let err = EngineError::Unreachable {
            host: "unix:///nope.sock".into(),
            detail: "the socket /nope.sock does not exist".into(),
        };
        let text = err.to_string();
        for needle in ["unix:///nope.sock", "daemon is running", "docker` group", "DOCKER_HOST"] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
    }
}
