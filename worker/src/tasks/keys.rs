//! Managing a repository's passphrases (`bkctl repo key add|list|remove`).
//!
//! The task runs on a worker that opened the repository with its own passphrase. A new
//! passphrase comes from a file on that worker, so it never travels through the coordinator;
//! adding one wraps the same master key again, so no data is rewritten. Removing the key the
//! worker's own passphrase opens, or the last key, is refused: either would lock everyone out.

use bk_proto::model::{KeyAction, RepositoryKeyInfo, TaskReport};

use super::context::TaskContext;
use crate::error::TaskError;
use crate::repository::keys::{list_keys, remove_key, write_key, KeyFile, Passphrase};

/// Runs a repository-key action.
///
/// # Errors
/// [`TaskError::Invalid`] for a passphrase file that cannot be read, an unknown key, or a
/// removal that would lock the repository; store errors.
pub async fn run(context: &TaskContext, action: &KeyAction) -> Result<TaskReport, TaskError> {
    let mut report = TaskReport::default();
    match action {
        KeyAction::List => {}
        KeyAction::Add { new_password_file } => {
            let key_id = add(context, new_password_file).await?;
            report.events.push(format!("added key {key_id}"));
        }
        KeyAction::Remove { key_id } => {
            remove(context, key_id).await?;
            report.events.push(format!("removed key {key_id}"));
        }
    }
    report.keys = current_keys(context).await?;
    report.num_objects = report.keys.len() as u64;
    Ok(report)
}

async fn add(context: &TaskContext, new_password_file: &str) -> Result<String, TaskError> {
    let text = std::fs::read_to_string(new_password_file).map_err(|error| {
        TaskError::Invalid(format!(
            "cannot read the new passphrase from `{new_password_file}` on worker `{}`: {error}",
            context.worker.config.worker_id()
        ))
    })?;
    let passphrase = text.trim_end_matches(['\n', '\r']);
    if passphrase.is_empty() {
        return Err(TaskError::Invalid(format!("`{new_password_file}` is empty")));
    }
    let passphrase = Passphrase(passphrase.as_bytes().to_vec());
    let repository = &context.repository;
    let (master, settings) = (repository.key.clone(), context.worker.config.key_derivation);
    let (config_id, host) =
        (repository.config.config_id.clone(), context.worker.config.worker_id());
    let file = tokio::task::spawn_blocking(move || {
        KeyFile::wrap(&master, &passphrase, settings, &config_id, &host)
    })
    .await
    .map_err(|error| TaskError::Retryable(error.to_string()))?
    .map_err(TaskError::Invalid)?;
    write_key(repository.store.as_ref(), &file).await?;
    Ok(file.key_id)
}

async fn remove(context: &TaskContext, key_id: &str) -> Result<(), TaskError> {
    let repository = &context.repository;
    if key_id == repository.key_id {
        return Err(TaskError::Invalid(format!(
            "refusing to remove key {key_id}: it is the one worker `{}`'s passphrase opens. Give the workers the new \
             passphrase first (their password_file is re-read at every task), then remove the old key",
            context.worker.config.worker_id()
        )));
    }
    let keys = list_keys(repository.store.as_ref()).await?;
    let ours: Vec<&KeyFile> =
        keys.iter().filter(|file| file.config_id == repository.config.config_id).collect();
    if !ours.iter().any(|file| file.key_id == key_id) {
        return Err(TaskError::Invalid(format!(
            "repository `{}` has no key {key_id} (`bkctl repo key list {}` lists them)",
            repository.name, repository.name
        )));
    }
    if ours.len() < 2 {
        return Err(TaskError::Invalid(format!(
            "refusing to remove key {key_id}: it is the last one"
        )));
    }
    remove_key(repository.store.as_ref(), key_id).await?;
    Ok(())
}

async fn current_keys(context: &TaskContext) -> Result<Vec<RepositoryKeyInfo>, TaskError> {
    let repository = &context.repository;
    let mut keys: Vec<RepositoryKeyInfo> = list_keys(repository.store.as_ref())
        .await?
        .into_iter()
        .filter(|file| file.config_id == repository.config.config_id)
        .map(|file| RepositoryKeyInfo {
            current: file.key_id == repository.key_id,
            kdf: format!(
                "{} m={}KiB t={} p={}",
                file.kdf,
                file.kdf_settings.memory_kib,
                file.kdf_settings.iterations,
                file.kdf_settings.parallelism
            ),
            key_id: file.key_id,
            created_at: file.created_at,
            host: file.host,
        })
        .collect();
    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    Ok(keys)
}
