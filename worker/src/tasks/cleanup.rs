//! Removing a job's staging area once the job has ended (succeeded or not).

use bk_proto::model::TaskReport;
use futures::{StreamExt, TryStreamExt};

use super::context::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::layout::job_staging_dir;

/// Deletes everything under `staging/<job id>/`. Idempotent: nothing left is success.
///
/// # Errors
/// [`TaskError::Repository`] when listing or deleting fails.
pub async fn remove_staging(context: &TaskContext) -> Result<TaskReport, TaskError> {
    let dir = job_staging_dir(context.spec.task_id.job_id);
    let store = &context.repository.store;
    let locations = store.list(Some(&dir)).map_ok(|meta| meta.location).boxed();
    let deleted: Vec<_> = store
        .delete_stream(locations)
        .try_collect()
        .await
        .map_err(RepositoryError::store(dir.to_string()))?;
    Ok(TaskReport { num_objects: deleted.len() as u64, ..TaskReport::default() })
}
