//! Why a request cannot be planned, shared by every planner.

use bk_proto::ids::BackupId;

/// Why a request cannot be planned. Each names what is wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The request names a source that is not registered.
    #[error("unknown source `{0}`: register it with `bkctl source add`")]
    UnknownSource(String),
    /// The request names a repository that is not registered.
    #[error("unknown repository `{0}`: register it with `bkctl repo add`")]
    UnknownRepository(String),
    /// The source's topology is unusable.
    #[error("source `{source_name}` is invalid: {reason}")]
    InvalidSource {
        /// The source's name.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The prune cannot be planned as asked.
    #[error("cannot prune: {0}")]
    InvalidPrune(String),
    /// The restore cannot be planned as asked.
    #[error("cannot restore backup `{backup_id}`: {reason}")]
    InvalidRestore {
        /// The backup.
        backup_id: String,
        /// What is wrong, and how to fix it.
        reason: String,
    },
    /// The drill cannot be planned as asked.
    #[error("cannot drill: {0}")]
    InvalidDrill(String),
    /// The request names a backup that does not exist (or was forgotten by a prune).
    #[error("backup `{0}` not found: list them with `bkctl backups`")]
    UnknownBackup(BackupId),
    /// The repository check cannot run as asked.
    #[error("cannot check the repository: {0}")]
    InvalidCheck(String),
}
