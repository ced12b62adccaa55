//! Worker errors. Each carries the object key it is about and says whether retrying can help.

use object_store::Error as StoreError;

/// Result of repository operations.
pub type RepositoryResult<T> = Result<T, RepositoryError>;

/// A repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The store failed on `key`.
    #[error("repository object `{key}`: {source}")]
    Store {
        /// The key.
        key: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// `key` does not hold what bk wrote there.
    #[error("repository object `{key}` is corrupt: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing into the repository failed in a way another attempt may not meet (an upload
    /// that failed after its retries).
    #[error("repository write failed: {0}")]
    WriteFailed(String),
    /// The repository cannot be opened with what this worker has: no passphrase, a wrong one.
    #[error("cannot open repository `{repository}`: {reason}")]
    Locked {
        /// The repository's name.
        repository: String,
        /// Why, and how to fix it.
        reason: String,
    },
    /// The worker's local index cache failed (its disk, not the repository).
    #[error("{0}")]
    LocalCache(String),
    /// A repository in a format this bk does not read.
    #[error(
        "repository `{url}` is in format {format}, written by an earlier bk; this bk reads and writes format 3 only \
         (packed, encrypted, object lists as sorted binary runs). There is no conversion: register a new repository \
         (`bkctl repo add NAME URL`) and back up into it"
    )]
    UnsupportedFormat {
        /// The repository's URL.
        url: String,
        /// Its format.
        format: u32,
    },
}

impl RepositoryError {
    /// Maps a store error on `key`, for `map_err`.
    pub fn store(key: impl Into<String>) -> impl FnOnce(StoreError) -> Self {
        let key = key.into();
        move |source| RepositoryError::Store { key, source }
    }
}

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Reading the node's store failed on `key`.
    #[error("failed to read source object `{key}`: {source}")]
    Source {
        /// The key.
        key: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Writing to the restore target failed on `key`.
    #[error("failed to write `{key}` into the restore target: {source}")]
    Target {
        /// The key.
        key: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// No catalog under the prefix: the backup would be unusable.
    #[error(
        "no InfluxDB 3 catalog found under `{prefix}`: looked for catalog/v3/ (3.10+), catalog/v2/ (3.4-3.9) \
         and catalogs/ + _catalog_checkpoint (3.0-3.3); check the cluster id (node id on Core) and that this \
         worker's store points at the cluster's object store"
    )]
    NoCatalog {
        /// The prefix searched.
        prefix: String,
    },
    /// The task cannot run as specified, or a guard refused it.
    #[error("{0}")]
    Invalid(String),
    /// Backup data is missing or does not hash to what the manifest records.
    #[error("{0}")]
    Damaged(String),
    /// A transient condition (a server not reachable yet, busy): another attempt may succeed.
    #[error("{0}")]
    Retryable(String),
    /// The coordinator took the task back (lease lost, job failed) or the worker is stopping.
    #[error("task abandoned: {0}")]
    Abandoned(String),
}

impl TaskError {
    /// Whether the same task may succeed if run again.
    pub fn is_retryable(&self) -> bool {
        match self {
            TaskError::Source { source, .. }
            | TaskError::Repository(RepositoryError::Store { source, .. }) => is_transient(source),
            TaskError::Repository(
                RepositoryError::WriteFailed(_) | RepositoryError::LocalCache(_),
            ) => true,
            TaskError::Target { source, .. } => is_transient(source),
            TaskError::Repository(
                RepositoryError::Corrupt { .. }
                | RepositoryError::Locked { .. }
                | RepositoryError::UnsupportedFormat { .. },
            )
            | TaskError::NoCatalog { .. }
            | TaskError::Invalid(_)
            | TaskError::Damaged(_) => false,
            TaskError::Abandoned(_) | TaskError::Retryable(_) => true,
        }
    }
}

/// Store errors worth retrying: anything but a definite answer about the request itself.
pub fn is_transient(error: &StoreError) -> bool {
    !matches!(
        error,
        StoreError::NotFound { .. }
            | StoreError::InvalidPath { .. }
            | StoreError::NotSupported { .. }
            | StoreError::PermissionDenied { .. }
            | StoreError::Unauthenticated { .. }
            | StoreError::UnknownConfigurationKey { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_error(kind: &str) -> StoreError {
        let source: Box<dyn std::error::Error + Send + Sync> = "x".into();
        match kind {
            "not found" => StoreError::NotFound { path: "k".into(), source },
            "denied" => StoreError::PermissionDenied { path: "k".into(), source },
            _ => StoreError::Generic { store: "S3", source },
        }
    }

    #[test]
    fn test_which_task_errors_a_retry_can_help() {
        let cases: Vec<(&str, TaskError, bool)> = vec![
            (
                "source read, connection reset",
                TaskError::Source { key: "k".into(), source: store_error("generic") },
                true,
            ),
            (
                "source object gone",
                TaskError::Source { key: "k".into(), source: store_error("not found") },
                false,
            ),
            (
                "target write, server error",
                TaskError::Target { key: "k".into(), source: store_error("generic") },
                true,
            ),
            (
                "target refuses the credentials",
                TaskError::Target { key: "k".into(), source: store_error("denied") },
                false,
            ),
            (
                "repository write interrupted",
                TaskError::Repository(RepositoryError::WriteFailed("x".into())),
                true,
            ),
            (
                "repository corrupt",
                TaskError::Repository(RepositoryError::Corrupt {
                    key: "k".into(),
                    reason: "x".into(),
                }),
                false,
            ),
            ("backup data damaged", TaskError::Damaged("x".into()), false),
            ("a guard refused", TaskError::Invalid("x".into()), false),
            ("server not up yet", TaskError::Retryable("x".into()), true),
        ];
        for (case, error, want) in cases {
            assert_eq!(error.is_retryable(), want, "{case}");
        }
        let target = TaskError::Target { key: "db/x".into(), source: store_error("generic") };
        assert!(target.to_string().contains("into the restore target"), "{target}");
        let source = TaskError::Source { key: "db/x".into(), source: store_error("generic") };
        assert!(source.to_string().contains("read source object"), "{source}");
    }
}
