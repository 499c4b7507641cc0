//! The benchmark's one error type: any failure aborts the scenario it happened in.

/// What went wrong in a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Reading `/proc` or a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `/proc` did not have the expected shape.
    #[error("{0}")]
    Proc(String),
    /// The simulator child could not be started or answered its admin API badly.
    #[error("simulator: {0}")]
    Simulator(String),
    /// An Atlas service returned an error.
    #[error("atlas: {0}")]
    Atlas(#[from] atlas_core::Error),
    /// The Graph client could not be built or signed in.
    #[error("graph: {0}")]
    Graph(#[from] atlas_graph::GraphError),
    /// The mail source failed outside a backup run (listing mailboxes).
    #[error("mail source: {0}")]
    Source(#[from] atlas_core::ports::SourceError),
    /// Restore failed as a whole.
    #[error("restore: {0}")]
    Restore(#[from] atlas_core::service::restore::RestoreError),
    /// The S3 store could not be configured or set up.
    #[error("s3: {0}")]
    S3(String),
    /// A run finished but did not do what the scenario needs to measure it honestly
    /// (a partial backup, verify damage, restore failures).
    #[error("{0}")]
    Incomplete(String),
}

impl BenchError {
    pub(crate) fn io(path: &str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}
