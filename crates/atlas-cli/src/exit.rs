//! Exit codes, decided in one place so that every command follows the same contract
//! (documented in `--help` and the README): 0 success, 1 failure, 2 partial, 3 usage or
//! configuration. The old tool exited 0 on partial failures, which hid broken nightly
//! backups from cron; here a command returns [`Exit::Partial`] explicitly.

use std::process::ExitCode;

use crate::config::ConfigError;

/// The process outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything done.
    Success,
    /// Failed; see the error on stderr.
    Failure,
    /// Some items or mailboxes failed or were skipped; what was captured was committed.
    /// Returned by commands that process many items (backup, restore), none of which
    /// exists yet.
    #[allow(dead_code)]
    Partial,
    /// Bad usage or configuration: fix the command line or the settings and rerun.
    Usage,
}

impl Exit {
    /// Classify an error: configuration and usage problems exit 3, everything else 1.
    pub fn for_error(err: &anyhow::Error) -> Self {
        let usage = err
            .chain()
            .any(|cause| cause.is::<ConfigError>() || cause.is::<UsageError>());
        if usage { Exit::Usage } else { Exit::Failure }
    }

    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Partial => 2,
            Exit::Usage => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// A problem with how Atlas was invoked or set up that is found while a command runs
/// (not by clap or the config check), e.g. a storage backend this build lacks. Exits 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use super::{Exit, UsageError};
    use crate::config::ConfigError;

    #[test]
    fn config_and_usage_errors_exit_3_even_with_context() {
        let err = anyhow::Error::new(ConfigError::UnknownTenant {
            name: "x".into(),
            known: vec![],
        })
        .context("loading configuration");
        assert_eq!(Exit::for_error(&err), Exit::Usage);
        let err = anyhow::Error::new(UsageError("no S3 in this build".into())).context("opening");
        assert_eq!(Exit::for_error(&err).code(), 3);
    }

    #[test]
    fn other_errors_exit_1() {
        let err = anyhow::anyhow!("disk full");
        assert_eq!(Exit::for_error(&err).code(), 1);
    }
}
