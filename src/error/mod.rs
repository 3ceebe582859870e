//! Errors that reach the user, and the exit code each kind maps to.

pub mod setting;

pub use setting::ConfigError;

/// Exit codes are part of the interface: scripts and CI jobs branch on them.
pub mod exit {
    /// An operation or a check failed.
    pub const FAILED: i32 = 1;
    /// Bad usage or configuration; nothing was touched.
    pub const CONFIG: i32 = 2;
    /// The Docker Engine could not be reached.
    pub const DOCKER_UNREACHABLE: i32 = 3;
}

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings or usage are wrong; every problem found is listed, none was acted on.
    #[error("{}", render_config_errors(.0))]
    Config(Vec<ConfigError>),
    /// The Docker Engine did not answer.
    #[error("{0}")]
    DockerUnreachable(String),
    /// An operation failed after validation.
    #[error("{0}")]
    Failed(String),
}

fn render_config_errors(errors: &[ConfigError]) -> String {
    let noun = if errors.len() == 1 { "problem" } else { "problems" };
    let mut out = format!("invalid configuration ({} {noun}, nothing was changed):", errors.len());
    for e in errors {
        out.push_str("\n- ");
        out.push_str(&e.to_string().replace('\n', "\n  "));
    }
    out
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::DockerUnreachable(_) => exit::DOCKER_UNREACHABLE,
            Error::Failed(_) => exit::FAILED,
        }
    }

    pub fn config(error: ConfigError) -> Self {
        Error::Config(vec![error])
    }

    /// A short machine-readable kind for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::DockerUnreachable(_) => "docker-unreachable",
            Error::Failed(_) => "failed",
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Failed(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
