//! Restore drills: prove a backup restorable by restoring it into scratch space, checking the
//! files with what bk knows of the database's formats, starting the database on them and
//! asking it questions.
//!
//! # Layout
//! - [`config`]: the worker's `[drill]` section (scratch space, start commands), kept apart
//!   from the store and every repository.
//! - [`files`]: walking a restored tree on local disk.
//! - [`influxdb3_files`]: offline checks of an InfluxDB 3 tree (catalog, manifests, parquet
//!   footers, WAL).
//! - [`influxdb3_server`]: `influxdb3 serve` on the tree, and its count / time-range queries.
//! - [`questdb_files`]: offline checks of a QuestDB root (trigger, table files, checkpoint).
//! - [`questdb_server`]: QuestDB on the root, its queries and `wal_tables()`.
//! - [`server`]: a started database process (free port, log, health wait, graceful stop).
//!
//! A drill runs as one task on one worker (everything needs the same local directory), in
//! `<scratch_dir>/<worker id>/data/<task>/`, wiped before and after it and when the worker
//! starts, so a drill cut short leaves nothing the next trips over; the database's log is kept
//! under `<scratch_dir>/<worker id>/logs/` when the drill fails.

pub mod config;
pub mod files;
pub mod influxdb3_files;
pub mod influxdb3_server;
pub mod questdb_files;
pub mod questdb_server;
pub mod server;

use std::path::Path;
use std::time::Instant;

use bk_proto::ids::BackupId;
use bk_proto::model::{CopyPhase, DrillDatabase, DrillReport, TaskReport};

use crate::error::TaskError;
use crate::questdb::recovery::{arm_recovery, Armed};
use crate::tasks::context::TaskContext;
use crate::tasks::restore::restore_objects;
use config::DrillConfig;

/// Runs a drill of `backup_id`. Check failures are the drill's outcome, not task errors: they
/// come back as a report with `problems` (the job fails, the drill is recorded as failed).
///
/// # Errors
/// [`TaskError::Invalid`] when this worker has no `[drill]` section or its scratch overlaps the
/// repository; repository errors that another attempt may fix.
pub async fn drill_backup(
    context: &TaskContext,
    backup_id: BackupId,
    database: &DrillDatabase,
) -> Result<TaskReport, TaskError> {
    let config = context.worker.config.drill.clone().ok_or_else(|| {
        TaskError::Invalid(
            "this worker has no [drill] section: drills run only on workers given scratch space"
                .to_string(),
        )
    })?;
    config
        .check_apart_from("node's store", &context.worker.config.store.url)
        .map_err(TaskError::Invalid)?;
    config
        .check_apart_from("repository", &context.spec.repository.url)
        .map_err(TaskError::Invalid)?;
    let task_name = context.spec.task_id.to_string().replace(['/', ':'], "-");
    let worker_id = context.worker.config.worker_id();
    let data_dir = config.data_root(&worker_id).join(&task_name);
    wipe(&data_dir)?;
    // Also when the task is dropped half-way (cancelled, lease lost, worker stopping): the
    // database process dies with its handle (`kill_on_drop`), the restored copy with this.
    let _scratch = WipeOnDrop(data_dir.clone());
    let mut report = TaskReport::default();
    let mut drill = DrillReport::default();
    let restored = Instant::now();
    let restore = restore_into(context, backup_id, &data_dir, &mut report).await;
    drill.restore_ms = restored.elapsed().as_millis() as u64;
    drill.scratch_bytes = files::bytes_under(&data_dir);
    let outcome = match restore {
        Ok(()) => {
            let log = config.logs_dir(&worker_id).join(format!("{task_name}.log"));
            check(context, &config, database, &data_dir, &log, &mut drill).await
        }
        Err(error) if error.is_retryable() => return Err(error),
        Err(error) => Err(format!("restoring into the scratch failed: {error}")),
    };
    drill.scratch_bytes = drill.scratch_bytes.max(files::bytes_under(&data_dir));
    wipe(&data_dir)?;
    match outcome {
        Ok(()) => drill.passed = true,
        Err(failure) => {
            report.problems.push(format!("drill failed: {failure}"));
            drill.failure = Some(failure);
        }
    }
    report.drill = Some(Box::new(drill));
    Ok(report)
}

async fn restore_into(
    context: &TaskContext,
    backup_id: BackupId,
    data_dir: &Path,
    report: &mut TaskReport,
) -> Result<(), TaskError> {
    std::fs::create_dir_all(data_dir).map_err(|error| {
        TaskError::Invalid(format!(
            "cannot create the drill scratch `{}`: {error}",
            data_dir.display()
        ))
    })?;
    let target_url = url::Url::from_directory_path(data_dir)
        .map_err(|()| {
            TaskError::Invalid(format!("`{}` is not an absolute path", data_dir.display()))
        })?
        .to_string();
    // The restore's own stage order (catalog first, compactor last); phases a backup lacks
    // restore nothing.
    for phase in [
        CopyPhase::Catalog,
        CopyPhase::Licence,
        CopyPhase::Nodes,
        CopyPhase::Compactor,
        CopyPhase::Copy,
    ] {
        let part = restore_objects(context, backup_id, &target_url, phase, None).await?;
        report.num_objects += part.num_objects;
        report.num_bytes += part.num_bytes;
    }
    Ok(())
}

/// The offline checks, then the online ones when a start command is configured.
async fn check(
    context: &TaskContext,
    config: &DrillConfig,
    database: &DrillDatabase,
    data_dir: &Path,
    log: &Path,
    drill: &mut DrillReport,
) -> Result<(), String> {
    match database {
        DrillDatabase::InfluxDb3 { nodes, serve_node, cluster_id, retention_deleted } => {
            let catalog_prefix = cluster_id.clone().unwrap_or_else(|| serve_node.clone());
            let root = data_dir.to_path_buf();
            let nodes = nodes.clone();
            let expected_missing = retention_deleted.iter().cloned().collect();
            let offline = tokio::task::spawn_blocking(move || {
                influxdb3_files::check_tree(&root, &nodes, &catalog_prefix, &expected_missing)
            })
            .await
            .map_err(|error| format!("the offline check stopped: {error}"))??;
            drill.checks.extend(offline.checks.iter().map(|check| format!("offline: {check}")));
            drill.tables.extend(offline.tables);
            let Some(binary) = &config.influxdb3_binary else {
                drill.checks.push("online: skipped ([drill] influxdb3_binary not set)".to_string());
                return Ok(());
            };
            let mut server = influxdb3_server::Influxdb3::start(
                binary,
                config,
                data_dir,
                serve_node,
                cluster_id.as_deref(),
                log,
            )?;
            let online = async {
                drill.start_ms =
                    Some(server.wait_healthy(config.start_timeout).await?.as_millis() as u64);
                server.table_facts().await
            }
            .await;
            finish_online(server.server, online, log, drill).await
        }
        DrillDatabase::QuestDb => {
            // As the restore's last step: QuestDB recovers from the checkpoint on start.
            let armed = arm_questdb_recovery(context, data_dir).await?;
            let root = data_dir.to_path_buf();
            let offline = tokio::task::spawn_blocking(move || questdb_files::check_root(&root))
                .await
                .map_err(|error| format!("the offline check stopped: {error}"))??;
            drill.checks.extend(offline.iter().map(|check| format!("offline: {check}")));
            if config.questdb_command.is_empty() {
                drill.checks.push("online: skipped ([drill] questdb_command not set)".to_string());
                return Ok(());
            }
            let mut server = questdb_server::QuestDb::start(
                config,
                &context.worker.config.questdb,
                data_dir,
                log,
            )?;
            let online = async {
                drill.start_ms =
                    Some(server.wait_healthy(config.start_timeout).await?.as_millis() as u64);
                drill.checks.push(format!("online: {}", server.check_recovered(data_dir, &armed)?));
                server.table_facts().await
            }
            .await;
            finish_online(server.server, online, log, drill).await
        }
    }
}

/// Arms recovery in the drill's restored root exactly as a restore's last task does.
async fn arm_questdb_recovery(context: &TaskContext, data_dir: &Path) -> Result<Armed, String> {
    let root =
        object_store::local::LocalFileSystem::new_with_prefix(data_dir).map_err(|error| {
            format!("cannot open the drill scratch `{}`: {error}", data_dir.display())
        })?;
    let restore_name = format!("drill-{}", context.spec.task_id.job_id);
    arm_recovery(&root, &restore_name)
        .await
        .map_err(|error| format!("cannot arm QuestDB's recovery in the restored root: {error}"))
}

/// Stops the server, records what the online check found, keeps the log only on failure.
async fn finish_online(
    server: server::Server,
    online: Result<Vec<bk_proto::model::TableFacts>, String>,
    log: &Path,
    drill: &mut DrillReport,
) -> Result<(), String> {
    let graceful = server.stop().await;
    match online {
        Ok(tables) => {
            drill.checks.push(format!(
                "online: the database started and answered count, min and max time for {} tables; stopped {}",
                tables.len(),
                if graceful { "gracefully" } else { "by SIGKILL after SIGTERM was ignored" }
            ));
            drill.tables.extend(tables);
            let _ = std::fs::remove_file(log);
            Ok(())
        }
        Err(failure) => {
            drill.log_file = Some(log.display().to_string());
            Err(failure)
        }
    }
}

/// Wipes what drills of this worker left in its scratch (a drill cut short by a crash). Runs
/// when the worker starts, before it takes any task.
///
/// # Errors
/// When the directory cannot be deleted.
pub fn wipe_leftovers(config: &crate::config::WorkerConfig) -> Result<(), String> {
    let Some(drill) = &config.drill else { return Ok(()) };
    wipe(&drill.data_root(&config.worker_id())).map_err(|error| error.to_string())
}

/// Deletes a directory when dropped.
struct WipeOnDrop(std::path::PathBuf);

impl Drop for WipeOnDrop {
    fn drop(&mut self) {
        let _ = wipe(&self.0);
    }
}

/// Deletes a drill's scratch data (the drill's only writes besides logs).
fn wipe(data_dir: &Path) -> Result<(), TaskError> {
    match std::fs::remove_dir_all(data_dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(TaskError::Invalid(format!(
            "cannot wipe the drill scratch `{}`: {error}",
            data_dir.display()
        ))),
    }
}
