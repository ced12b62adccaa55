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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bk_proto::model::{RepositoryRef, TaskKind, TaskSpec};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::WorkerConfig;
    use crate::repository::keys::KdfSettings;
    use crate::runtime::TaskRuntime;

    /// A worker whose passphrase for repository `r` (in `dir`) is `passphrase`.
    fn runtime(dir: &std::path::Path, passphrase: &str) -> TaskRuntime {
        let source = url::Url::from_directory_path(dir.join("source")).unwrap();
        std::fs::create_dir_all(dir.join("source")).unwrap();
        let mut config = WorkerConfig::new("src", "n1", source.as_str(), vec![]);
        config.repository_password = Some(passphrase.to_string());
        config.key_derivation = KdfSettings { memory_kib: 64, iterations: 1, parallelism: 1 };
        config.cache_dir = Some(dir.join("cache"));
        TaskRuntime::new(Arc::new(config), Vec::new())
    }

    /// Runs `action` on repository `r` in `dir` as `runtime`'s worker.
    async fn key_task(
        runtime: &TaskRuntime,
        dir: &std::path::Path,
        action: KeyAction,
    ) -> Result<TaskReport, TaskError> {
        let repository = url::Url::from_directory_path(dir.join("repo")).unwrap();
        let spec = TaskSpec {
            task_id: "01M8A8K5M4V56XN1S5AM6WRNAA/p0/t0".parse().unwrap(),
            source: "src".to_string(),
            repository: RepositoryRef::new("r", repository.as_str(), 1 << 20),
            parent: None,
            kind: TaskKind::RepositoryKey { action: action.clone() },
        };
        let progress = Arc::default();
        let context = runtime.context(spec, 1, &progress, &CancellationToken::new()).await?;
        run(&context, &action).await
    }

    fn ids(report: &TaskReport) -> Vec<(String, bool)> {
        report.keys.iter().map(|key| (key.key_id.clone(), key.current)).collect()
    }

    #[tokio::test]
    async fn test_keys_are_added_listed_and_removed_but_never_the_own_or_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let old = runtime(dir.path(), "old passphrase");
        let listed = key_task(&old, dir.path(), KeyAction::List).await.unwrap();
        let keys = ids(&listed);
        let [(own, true)] = keys.as_slice() else { panic!("one current key: {keys:?}") };
        let own = own.clone();

        // Refused: the last key, which is also the own one; a key that does not exist; a new
        // passphrase file that is missing or empty.
        let removing_own = KeyAction::Remove { key_id: own.clone() };
        let error = key_task(&old, dir.path(), removing_own).await.unwrap_err().to_string();
        assert!(error.contains("passphrase opens"), "{error}");
        let unknown = KeyAction::Remove { key_id: "nope".to_string() };
        let error = key_task(&old, dir.path(), unknown).await.unwrap_err().to_string();
        assert!(error.contains("has no key nope") && error.contains("repo key list"), "{error}");
        let missing = dir.path().join("missing").display().to_string();
        let add_missing = KeyAction::Add { new_password_file: missing.clone() };
        let error = key_task(&old, dir.path(), add_missing).await.unwrap_err().to_string();
        assert!(error.contains(&missing) && error.contains("src/n1"), "{error}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let add_empty = KeyAction::Add { new_password_file: empty.display().to_string() };
        let error = key_task(&old, dir.path(), add_empty).await.unwrap_err().to_string();
        assert!(error.contains("is empty"), "{error}");

        // A new passphrase opens the same repository; then the old key can go.
        let new_file = dir.path().join("new");
        std::fs::write(&new_file, "new passphrase\n").unwrap();
        let add = KeyAction::Add { new_password_file: new_file.display().to_string() };
        let added = key_task(&old, dir.path(), add).await.unwrap();
        assert_eq!(added.keys.len(), 2);
        let new = runtime(dir.path(), "new passphrase");
        let seen_by_new = key_task(&new, dir.path(), KeyAction::List).await.unwrap();
        let current: Vec<(String, bool)> = ids(&seen_by_new);
        assert!(current.contains(&(own.clone(), false)), "{current:?}");
        let removed =
            key_task(&new, dir.path(), KeyAction::Remove { key_id: own.clone() }).await.unwrap();
        assert_eq!(removed.keys.len(), 1);
        assert!(removed.keys[0].current && removed.keys[0].key_id != own);
        // A worker started with the old passphrase can no longer open it (one that unlocked it
        // before keeps the master key it holds until it restarts).
        let restarted_old = runtime(dir.path(), "old passphrase");
        let error = key_task(&restarted_old, dir.path(), KeyAction::List).await.unwrap_err();
        assert!(error.to_string().contains("passphrase"), "{error}");
    }
}
