//! A setting's provenance and a problem with one setting: what `settings` produces and
//! `error` reports. Here, in the lowest layer, so that settings names them without `error`
//! having to know settings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Where a setting's value came from, shown by `render --print-settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
    /// Computed from other settings or from the host (e.g. the address of `--iface`).
    Derived(String),
    /// Recorded by `up` in a site file; `given` is where `up` got it from.
    Site {
        file: PathBuf,
        given: Box<Source>,
    },
}

impl Source {
    /// Where a value first came from, looking through site records (a value `up` took from
    /// a record keeps the source it was recorded with).
    pub fn original(&self) -> &Source {
        match self {
            Source::Site { given, .. } => given.original(),
            other => other,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Derived(how) => write!(f, "derived: {how}"),
            Source::Site { file, given } => write!(f, "site ({}), first from {given}", file.display()),
        }
    }
}

/// One problem with one setting: what, where it came from, why it is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    pub field: String,
    pub value: Option<String>,
    pub source: Option<Source>,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            value: None,
            source: None,
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }

    pub fn from_source(mut self, source: Option<&Source>) -> Self {
        self.source = source.cloned();
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.field)?;
        if let Some(value) = &self.value {
            write!(f, " = '{value}'")?;
        }
        if let Some(source) = &self.source {
            write!(f, " (from {source})")?;
        }
        write!(f, ": {}\n  fix: {}", self.problem, self.fix)
    }
}
