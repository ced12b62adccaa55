//! Filesystem and volume snapshots: hold the database for a moment, not for the whole copy.
//!
//! A backup of a store on local disk can copy from a snapshot instead of the live files. For
//! QuestDB the worker sends `CHECKPOINT CREATE`, takes the snapshot, sends `CHECKPOINT RELEASE`
//! at once (the server is held for the snapshot's time, well under a second), and the copy
//! reads the snapshot; a cleanup task that always runs deletes it.
//!
//! Every snapshot a job takes is recorded in the repository's staging area,
//! `staging/<job>/snapshot-<node>.json`, *before* it is created (`creating`, with its
//! deterministic name, `bk-<job>-<node>`) and again once taken (where the store's files can be read): the copy
//! tasks read the record to know where to read from, and the cleanup deletes whatever the
//! record names, also when the worker died half-way through creating it.
//!
//! # Layout
//! - [`config`]: the `[snapshot]` section and its methods.
//! - [`btrfs`], [`reflink`], [`lvm`], [`command`]: one module per method.
//! - [`run`]: running their tools with a timeout, logging what they print.
//! - [`task`]: the InfluxDB 3 tasks that take and delete a node's snapshot.

pub mod btrfs;
pub mod command;
pub mod config;
pub mod lvm;
pub mod reflink;
pub mod run;
pub mod task;

use std::path::{Path, PathBuf};
use std::time::Instant;

use object_store::path::Path as Key;
use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::repository::staging::{read_marker, write_marker};
use crate::tasks::context::TaskContext;
use config::{Method, SnapshotConfig};

/// Where a job stands with a node's snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// It may exist (creation was started).
    Creating,
    /// It exists; the copy reads it.
    Taken,
    /// No method worked (`auto`): the copy reads the live files.
    NotTaken,
    /// Deleted.
    Deleted,
}

/// A node's snapshot for one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Where it stands.
    pub state: RecordState,
    /// The method used (`auto` until one worked).
    pub method: Method,
    /// Its name (`bk-<job>`), also the directory under scratch.
    pub name: String,
    /// The worker that took it (only it can read a local snapshot).
    pub worker: String,
    /// The store's directory.
    pub source_root: PathBuf,
    /// The scratch directory it is under (deletion needs it, also on a worker without the
    /// same config).
    #[serde(default)]
    pub scratch: Option<PathBuf>,
    /// Where the store's files can be read in the snapshot.
    #[serde(default)]
    pub data_path: Option<PathBuf>,
    /// `lvm`: the snapshot volume (`vg/name`).
    #[serde(default)]
    pub volume: Option<String>,
    /// How long taking it took.
    #[serde(default)]
    pub took_ms: u64,
}

/// A snapshot's name for a job's node (nodes sharing one store and scratch each take their
/// own): valid as a directory, an LVM volume and a cloud tag.
pub fn name_for(job_id: &str, node: &str) -> String {
    let node: String = node
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    format!("bk-{}-{node}", job_id.to_ascii_lowercase())
}

fn record_key(context: &TaskContext, node: &str) -> Key {
    Key::from(format!("staging/{}/snapshot-{node}.json", context.spec.task_id.job_id))
}

/// The node's snapshot record for this task's job, if any.
///
/// # Errors
/// Store errors; a record that does not parse.
pub async fn read_record(
    context: &TaskContext,
    node: &str,
) -> Result<Option<SnapshotRecord>, TaskError> {
    Ok(read_marker(&context.repository, &record_key(context, node)).await?)
}

/// Writes the node's snapshot record.
///
/// # Errors
/// Store errors.
pub async fn write_record(
    context: &TaskContext,
    node: &str,
    record: &SnapshotRecord,
) -> Result<(), TaskError> {
    Ok(write_marker(&context.repository, &record_key(context, node), record).await?)
}

/// What taking a snapshot came to.
#[derive(Debug)]
pub enum Taken {
    /// Taken and recorded.
    Snapshot(SnapshotRecord),
    /// `auto` found no method that works on this store: why, per method.
    NoneUsable(String),
}

/// Takes the node's snapshot for this task's job, recording it before and after.
///
/// `atomic_only`: the database needs every file from one instant (InfluxDB 3), so `reflink`
/// is refused (and skipped by `auto`).
///
/// # Errors
/// [`TaskError::Invalid`] when the configured method fails (`auto` instead records
/// `not_taken` and says why); store errors.
pub async fn take_for_job(
    context: &TaskContext,
    config: &SnapshotConfig,
    root: &Path,
    atomic_only: bool,
) -> Result<Taken, TaskError> {
    let node = &context.worker.config.node;
    let mut record = SnapshotRecord {
        state: RecordState::Creating,
        method: config.method,
        name: name_for(&context.spec.task_id.job_id.to_string(), node),
        worker: context.worker.config.worker_id(),
        source_root: root.to_path_buf(),
        scratch: config.scratch.clone(),
        data_path: None,
        volume: None,
        took_ms: 0,
    };
    write_record(context, node, &record).await?;
    let started = Instant::now();
    let mut tried = Vec::new();
    let methods: Vec<Method> = match config.method {
        Method::Auto if atomic_only => vec![Method::Btrfs, Method::Lvm],
        Method::Auto => vec![Method::Btrfs, Method::Lvm, Method::Reflink],
        Method::Reflink if atomic_only => {
            return Err(TaskError::Invalid(
                "[snapshot] method = \"reflink\" clones file by file, not at one instant: InfluxDB 3 needs an atomic \
                 snapshot (btrfs, lvm or command); reflink is for QuestDB, whose checkpoint makes the clone consistent"
                    .to_string(),
            ))
        }
        method => vec![method],
    };
    for method in methods {
        let refused = match method {
            Method::Btrfs if atomic_only => {
                btrfs::unsafe_for_unsynced_writers(root, config.timeout).await
            }
            _ => None,
        };
        if let Some(reason) = refused {
            if config.method == Method::Auto {
                tried.push(format!("btrfs: {reason}"));
                continue;
            }
            return Err(TaskError::Invalid(format!(
                "[snapshot] method \"btrfs\" refused: {reason}"
            )));
        }
        match take_with(config, method, root, &record.name).await {
            Ok((data_path, volume)) => {
                record.state = RecordState::Taken;
                record.method = method;
                record.data_path = Some(data_path);
                record.volume = volume;
                record.took_ms = started.elapsed().as_millis() as u64;
                write_record(context, node, &record).await?;
                return Ok(Taken::Snapshot(record));
            }
            Err(reason) if config.method == Method::Auto => {
                tried.push(format!("{}: {reason}", method.as_str()))
            }
            Err(reason) => {
                return Err(TaskError::Invalid(format!(
                    "[snapshot] method \"{}\" failed on `{}`: {reason}",
                    method.as_str(),
                    root.display()
                )))
            }
        }
    }
    record.state = RecordState::NotTaken;
    write_record(context, node, &record).await?;
    Ok(Taken::NoneUsable(tried.join("; ")))
}

async fn take_with(
    config: &SnapshotConfig,
    method: Method,
    root: &Path,
    name: &str,
) -> Result<(PathBuf, Option<String>), String> {
    match method {
        Method::Btrfs => {
            Ok((btrfs::take(root, config.scratch()?, name, config.timeout).await?, None))
        }
        Method::Reflink => {
            Ok((reflink::take(root, config.scratch()?, name, config.timeout).await?, None))
        }
        Method::Lvm => {
            let (path, volume) = lvm::take(root, config.scratch()?, name, config.timeout).await?;
            Ok((path, Some(volume)))
        }
        Method::Command => Ok((command::take(config, root, name).await?, None)),
        Method::None | Method::Auto => Err("no snapshot method".to_string()),
    }
}

/// Deletes what `record` names (whatever state it reached); deleting what is gone succeeds.
///
/// # Errors
/// The method's tool failed.
pub async fn delete(config: &SnapshotConfig, record: &SnapshotRecord) -> Result<(), String> {
    let scratch = record.scratch.as_deref().or(config.scratch.as_deref());
    let target = scratch.map(|scratch| scratch.join(&record.name));
    let methods = match record.method {
        // Creation was cut short before `auto` settled on one: undo each that may have run.
        Method::Auto => vec![Method::Btrfs, Method::Lvm, Method::Reflink],
        method => vec![method],
    };
    for method in methods {
        match (method, &target) {
            (Method::Btrfs, Some(target)) => btrfs::delete(target, config.timeout).await?,
            (Method::Reflink, Some(target)) => reflink::delete(target).await?,
            (Method::Lvm, Some(target)) => {
                let volume = match &record.volume {
                    Some(volume) => volume.clone(),
                    None => match lvm::volume_of(&record.source_root, config.timeout).await {
                        Ok(origin) => format!(
                            "{}/{}",
                            origin.name.split('/').next().unwrap_or_default(),
                            record.name
                        ),
                        // Not on LVM: nothing of this name can exist.
                        Err(_) => continue,
                    },
                };
                lvm::delete(target, &volume, config.timeout).await?;
            }
            (Method::Command, _) => {
                command::delete(
                    config,
                    &record.source_root,
                    &record.name,
                    record.data_path.as_deref(),
                )
                .await?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Deletes the node's snapshot of this task's job, if one was recorded and still exists.
/// Returns what it did, for the report.
///
/// # Errors
/// [`TaskError::Retryable`] when deletion fails (the cleanup retries until it works: a
/// snapshot left behind holds disk space); store errors.
pub async fn delete_for_job(context: &TaskContext) -> Result<Option<String>, TaskError> {
    let node = &context.worker.config.node;
    let Some(mut record) = read_record(context, node).await? else { return Ok(None) };
    if matches!(record.state, RecordState::Deleted | RecordState::NotTaken) {
        return Ok(None);
    }
    let config = context
        .worker
        .config
        .snapshot
        .clone()
        .unwrap_or_else(|| SnapshotConfig::for_deleting(record.method));
    if record.worker != context.worker.config.worker_id() {
        tracing::warn!(taker = %record.worker, "deleting a snapshot another worker of this node took");
    }
    delete(&config, &record).await.map_err(|reason| {
        TaskError::Retryable(format!(
            "cannot delete snapshot `{}` ({}): {reason}",
            record.name,
            record.method.as_str()
        ))
    })?;
    record.state = RecordState::Deleted;
    write_record(context, node, &record).await?;
    Ok(Some(format!("{} snapshot `{}` deleted", record.method.as_str(), record.name)))
}

/// Where a source-reading task of this job reads the node's files: the snapshot's directory
/// when one was taken, `None` for the live store.
///
/// # Errors
/// [`TaskError::Invalid`] when the snapshot is not readable on this worker (another worker of
/// the node took it on its own disk): copying the live files instead would be inconsistent.
pub async fn source_for_job(
    context: &TaskContext,
    node: &str,
) -> Result<Option<PathBuf>, TaskError> {
    let Some(record) = read_record(context, node).await? else { return Ok(None) };
    match (record.state, record.data_path) {
        (RecordState::Taken, Some(path)) if path.is_dir() => Ok(Some(path)),
        (RecordState::Taken, Some(path)) => Err(TaskError::Invalid(format!(
            "the job copies node `{node}` from snapshot `{}` at `{}`, taken by worker `{}`, which this worker cannot \
             read: run the node's tasks on that worker",
            record.name,
            path.display(),
            record.worker
        ))),
        (RecordState::Creating, _) | (RecordState::Deleted, _) | (RecordState::Taken, None) => {
            Err(TaskError::Invalid(format!(
                "the snapshot of node `{node}` for this job is not available (it is `{:?}`): the copy cannot read the \
                 instant the database was held at",
                record.state
            )))
        }
        (RecordState::NotTaken, _) => Ok(None),
    }
}
