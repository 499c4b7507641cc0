//! What can be wrong with a configuration, and how it is told to the administrator:
//! every problem at once, each naming the variable or file key to fix and never a value.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use super::field::Field;
use super::sources::Source;

/// What a command can be missing or have wrong, one entry per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The config-file key (or pseudo-key) the problem is about.
    pub field: String,
    /// What is wrong and how to fix it. Never contains a secret value.
    pub message: String,
}

impl Problem {
    pub(super) fn missing(field: Field, why: &str) -> Self {
        Self {
            field: field.key().to_owned(),
            message: format!(
                "missing{why}; set {} or \"{}\" in the config file",
                field.env(),
                field.key()
            ),
        }
    }

    pub(super) fn invalid(field: Field, source: &Source, reason: impl fmt::Display) -> Self {
        let origin = match source {
            Source::Env | Source::DotEnv(_) => format!("{} from {source}", field.env()),
            Source::File(_) | Source::FileTenant(..) => format!("\"{}\" in {source}", field.key()),
        };
        Self {
            field: field.key().to_owned(),
            message: format!("invalid ({origin}): {reason}"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why configuration could not be loaded or does not suffice for a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config or `.env` file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A config file is not a JSON object. The reason names line and column, never content.
    #[error("config file {path} is not valid: {reason}")]
    FileSyntax {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `.env` file has a line that cannot be parsed. The line itself is not shown
    /// because it may hold a secret.
    #[error("{path}: cannot parse line {line} (content not shown: it may hold a secret)")]
    DotEnvSyntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number, 0 when unknown.
        line: usize,
    },
    /// `-t/--tenant` names no configured tenant.
    #[error("unknown tenant \"{name}\": {}", known_tenants(.known))]
    UnknownTenant {
        /// The requested name.
        name: String,
        /// The tenants the config file defines.
        known: Vec<String>,
    },
    /// Fields are missing or invalid for the command; every problem is listed.
    #[error("{}", render_problems(.problems, .file.as_deref()))]
    Invalid {
        /// Every problem found, in field order.
        problems: Vec<Problem>,
        /// The config file that was used, if any, for the hint line.
        file: Option<PathBuf>,
    },
}

fn known_tenants(known: &[String]) -> String {
    if known.is_empty() {
        "no config file defines named tenants, and it is not the configured tenant_id".to_owned()
    } else {
        format!("configured tenants are {}", known.join(", "))
    }
}

fn render_problems(problems: &[Problem], file: Option<&Path>) -> String {
    let mut out = format!(
        "configuration is incomplete or invalid ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        out.push_str("\n  - ");
        out.push_str(&problem.to_string());
    }
    match file {
        Some(path) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "\n(config file used: {})", path.display());
        }
        None => out.push_str(
            "\n(no config file found; searched ./atlas.config.json, ./.atlas/config.json, ~/.atlas/config.json)",
        ),
    }
    out
}
