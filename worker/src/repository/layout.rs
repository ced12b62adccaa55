//! Where things live in a format-2 repository.

use bk_proto::ids::{BackupId, JobId, TaskId};
use object_store::path::Path;

use super::pack::PackId;

/// A format-1 repository's description: its presence means "refuse, never misread".
pub const FORMAT_1_FILE: &str = "bk-repository.json";
/// Candidate configs, one per initialisation (a race may leave several; see `open`).
pub const CONFIG_DIR: &str = "config";
/// Key files.
pub const KEYS_DIR: &str = "keys";
/// Packs.
pub const PACKS_DIR: &str = "packs";
/// Index files, by partition (see [`super::index`]).
pub const INDEX_DIR: &str = "index";
/// Object list chunks (see [`super::list`]).
pub const LISTS_DIR: &str = "lists";
/// Backups (manifests and segments).
pub const BACKUPS_DIR: &str = "backups";

/// Key of config `config_id`.
pub fn config_path(config_id: &str) -> Path {
    Path::from(format!("{CONFIG_DIR}/{config_id}"))
}

/// Key of key file `key_id`.
pub fn key_path(key_id: &str) -> Path {
    Path::from(format!("{KEYS_DIR}/{key_id}"))
}

/// Key of a pack: `packs/<first 2 hex>/<32 hex>`.
pub fn pack_path(pack: PackId) -> Path {
    let name = pack.to_hex();
    Path::from(format!("{PACKS_DIR}/{}/{name}", &name[..2]))
}

/// Directory of a backup.
pub fn backup_dir(backup_id: BackupId) -> String {
    format!("{BACKUPS_DIR}/{backup_id}")
}

/// Key of a backup's manifest: its commit point.
pub fn manifest_key(backup_id: BackupId) -> Path {
    Path::from(format!("{}/manifest", backup_dir(backup_id)))
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

/// Key of the record an attempt saves its progress in (replaced at each save).
pub fn progress_key(task_id: TaskId, attempt: u32) -> Path {
    Path::from(format!("{}/progress", attempt_staging_dir(task_id, attempt)))
}

/// The name an attempt's index files start with (unique per attempt).
pub fn attempt_index_name(task_id: TaskId, attempt: u32) -> String {
    format!("{}-a{attempt}", task_id.to_string().replace(['/', ':'], "-"))
}

/// Key of the record an attempt writes when it completes.
pub fn done_key(task_id: TaskId, attempt: u32) -> Path {
    Path::from(format!("{}/done", attempt_staging_dir(task_id, attempt)))
}
