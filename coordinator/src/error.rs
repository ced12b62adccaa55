//! The conditions a coordinator client must handle, mapped to gRPC codes in one place.

use bk_proto::LEADER_ADDR_METADATA;
use tonic::Status;

use crate::core::job::JobEventRejected;
use crate::core::plan::PlanError;
use crate::core::Rejection;

/// Result of coordinator operations.
pub type CoordinatorResult<T> = Result<T, CoordinatorError>;

/// What can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// A named thing does not exist.
    #[error("{what} not found")]
    NotFound {
        /// E.g. "job `01J…`".
        what: String,
    },
    /// The request is malformed or refers to something unusable.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request is valid but the state does not allow it now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Writes go to the leader; this replica is not it.
    #[error("this replica is not the leader (leader: {})", leader_addr.as_deref().unwrap_or("unknown, election in progress"))]
    NotLeader {
        /// The leader's address, when known.
        leader_addr: Option<String>,
    },
    /// Raft stopped; the replica is shutting down.
    #[error("raft stopped: {0}")]
    RaftFatal(String),
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<Rejection> for CoordinatorError {
    /// A name that does not exist is not found; everything else is a state that does not allow
    /// the request now.
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::UnknownJob(job_id) => Self::NotFound { what: format!("job `{job_id}`") },
            Rejection::UnknownSchedule(name) => {
                Self::NotFound { what: format!("schedule `{name}`") }
            }
            Rejection::Job(JobEventRejected::UnknownTask(slot)) => {
                Self::NotFound { what: format!("task at {slot:?}") }
            }
            other => Self::FailedPrecondition(other.to_string()),
        }
    }
}

impl From<CoordinatorError> for Status {
    fn from(error: CoordinatorError) -> Self {
        let message = error.to_string();
        match error {
            CoordinatorError::NotFound { .. }
            | CoordinatorError::Plan(PlanError::UnknownBackup(_)) => Status::not_found(message),
            CoordinatorError::FailedPrecondition(_) => Status::failed_precondition(message),
            CoordinatorError::InvalidRequest(_) | CoordinatorError::Plan(_) => {
                Status::invalid_argument(message)
            }
            CoordinatorError::NotLeader { leader_addr } => {
                let mut status = Status::unavailable(message);
                if let Some(value) = leader_addr.and_then(|address| address.parse().ok()) {
                    status.metadata_mut().insert(LEADER_ADDR_METADATA, value);
                }
                status
            }
            CoordinatorError::RaftFatal(_) => Status::unavailable(message),
            CoordinatorError::Internal(_) => Status::internal(message),
        }
    }
}
