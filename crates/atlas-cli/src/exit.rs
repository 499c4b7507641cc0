//! Exit codes, decided in one place so that every command follows the same contract
//! (documented in `--help` and the README's table): 0 success, 1 failure, 2 partial, 3 usage
//! or configuration. The old tool exited 0 on partial failures, which hid broken nightly
//! backups from cron; here a command returns [`Exit::Partial`] explicitly.
//!
//! Errors are classified by type, never by text: the CLI's own [`UsageError`] and
//! [`ConfigError`], and the core's variants that mean "the command line names something
//! that is not there" (an unknown mailbox, snapshot or message, an ambiguous prefix, a
//! refused option), wherever in the context chain they sit.

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
        if err.chain().any(is_usage) {
            Exit::Usage
        } else {
            Exit::Failure
        }
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

/// Whether one error of a chain is the user's to fix on the command line or in the settings.
fn is_usage(cause: &(dyn std::error::Error + 'static)) -> bool {
    use atlas_core::Error as Core;
    use atlas_core::ports::{SourceError, TargetError};
    if cause.is::<ConfigError>() || cause.is::<UsageError>() {
        return true;
    }
    if let Some(e) = cause.downcast_ref::<Core>() {
        return match e {
            Core::InvalidInput { .. }
            | Core::MailboxNotFound { .. }
            | Core::MessageNotFound { .. }
            | Core::AmbiguousReference { .. }
            | Core::SnapshotNotFound { .. }
            | Core::OutputExists { .. } => true,
            Core::Source(s) => is_usage(s),
            _ => false,
        };
    }
    // Transparent wrappers hide the core error from the chain: look inside.
    if let Some(e) = cause.downcast_ref::<atlas_core::service::restore::RestoreError>() {
        use atlas_core::service::restore::RestoreError;
        return match e {
            RestoreError::Core(e) => is_usage(e),
            RestoreError::Target(e) => is_usage(e),
            _ => false,
        };
    }
    if let Some(e) = cause.downcast_ref::<SourceError>() {
        return matches!(
            e,
            SourceError::MailboxNotFound(_) | SourceError::MailboxNotEnabled(_)
        );
    }
    if let Some(e) = cause.downcast_ref::<TargetError>() {
        return matches!(
            e,
            TargetError::MailboxNotFound(_) | TargetError::MailboxNotEnabled(_)
        );
    }
    if let Some(e) = cause.downcast_ref::<atlas_graph::GraphError>() {
        return matches!(e, atlas_graph::GraphError::MailboxNotFound { .. });
    }
    false
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
    fn unknown_names_and_refused_options_from_the_core_exit_3() {
        let cases = [
            atlas_core::Error::InvalidInput {
                reason: "no keep rule given".into(),
            },
            atlas_core::Error::MailboxNotFound {
                mailbox: "nobody".into(),
            },
            atlas_core::Error::MessageNotFound {
                reference: "x".into(),
            },
            atlas_core::Error::AmbiguousReference {
                reference: "a".into(),
                matches: 2,
            },
            atlas_core::Error::Source(atlas_core::ports::SourceError::MailboxNotFound(
                "nobody".into(),
            )),
        ];
        for case in cases {
            let err = anyhow::Error::new(case).context("listing");
            assert_eq!(Exit::for_error(&err), Exit::Usage, "{err:#}");
        }
        // Damage is not the user's to fix on the command line.
        let err = anyhow::Error::new(atlas_core::Error::Missing { key: "k".into() });
        assert_eq!(Exit::for_error(&err), Exit::Failure);
    }

    #[test]
    fn invalid_input_reads_without_an_internal_prefix() {
        let err = atlas_core::Error::InvalidInput {
            reason: "no keep rule given".into(),
        };
        assert_eq!(err.to_string(), "no keep rule given");
    }

    #[test]
    fn other_errors_exit_1() {
        let err = anyhow::anyhow!("disk full");
        assert_eq!(Exit::for_error(&err).code(), 1);
    }
}
