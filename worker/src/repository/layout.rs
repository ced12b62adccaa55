//! Where things live in a repository.

use bk_proto::ids::{BackupId, JobId, TaskId};
use object_store::path::Path;

/// The repository's description, written once, create-only.
pub const REPOSITORY_FILE: &str = "bk-repository.json";

/// Key of the chunk with this BLAKE3 hex digest.
pub fn chunk_key(hash_hex: &str) -> Path {
    Path::from(format!("chunks/{}/{hash_hex}", &hash_hex[..2.min(hash_hex.len())]))
}

/// Directory of a backup.
pub fn backup_dir(backup_id: BackupId) -> String {
    format!("backups/{backup_id}")
}

/// Key of a backup's manifest: its commit point.
pub fn manifest_key(backup_id: BackupId) -> Path {
    Path::from(format!("{}/manifest", backup_dir(backup_id)))
}

/// Key of segment `index` of a backup's object list.
pub fn segment_key(backup_id: BackupId, index: usize) -> Path {
    Path::from(format!("{}/segments/{index:06}.jsonl", backup_dir(backup_id)))
}

/// A job's staging directory.
pub fn job_staging_dir(job_id: JobId) -> Path {
    Path::from(format!("staging/{job_id}"))
}

/// The staging directory of one attempt of a task.
pub fn attempt_staging_dir(task_id: TaskId, attempt: u32) -> String {
    format!("staging/{task_id}/a{attempt}")
}

/// The staging directory of a task (all attempts).
pub fn task_staging_dir(task_id: TaskId) -> Path {
    Path::from(format!("staging/{task_id}"))
}

/// Key of part `index` written by an attempt.
pub fn part_key(task_id: TaskId, attempt: u32, index: usize) -> Path {
    Path::from(format!("{}/part-{index:06}.jsonl", attempt_staging_dir(task_id, attempt)))
}

/// Key of the record an attempt writes when it completes.
pub fn done_key(task_id: TaskId, attempt: u32) -> Path {
    Path::from(format!("{}/done.json", attempt_staging_dir(task_id, attempt)))
}
