//! Turning API messages into JSON documents (`-o json`) and tables.

use bk_proto::pb;
use serde_json::{json, Value};

/// A job state's name.
pub(crate) fn job_state(state: i32) -> &'static str {
    match pb::JobState::try_from(state) {
        Ok(pb::JobState::Queued) => "queued",
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Failing) => "failing",
        Ok(pb::JobState::Succeeded) => "succeeded",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

/// A job kind's name.
pub(crate) fn job_kind(kind: i32) -> &'static str {
    match pb::JobKind::try_from(kind) {
        Ok(pb::JobKind::Backup) => "backup",
        Ok(pb::JobKind::Restore) => "restore",
        Ok(pb::JobKind::Verify) => "verify",
        Ok(pb::JobKind::Prune) => "prune",
        Ok(pb::JobKind::RepositoryKey) => "repository-key",
        Ok(pb::JobKind::Check) => "check",
        Ok(pb::JobKind::Drill) => "drill",
        _ => "unknown",
    }
}

/// A task state's name.
pub(crate) fn task_state(state: i32) -> &'static str {
    match pb::TaskState::try_from(state) {
        Ok(pb::TaskState::Blocked) => "blocked",
        Ok(pb::TaskState::Pending) => "pending",
        Ok(pb::TaskState::Running) => "running",
        Ok(pb::TaskState::Succeeded) => "succeeded",
        Ok(pb::TaskState::Failed) => "failed",
        Ok(pb::TaskState::Skipped) => "skipped",
        _ => "unknown",
    }
}

/// Whether the job has ended.
pub(crate) fn job_ended(job: &pb::Job) -> bool {
    matches!(
        pb::JobState::try_from(job.state),
        Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled)
    )
}

fn task_json(task: &pb::Task) -> Value {
    let progress = task.progress.unwrap_or_default();
    json!({
        "id": task.id, "label": task.label, "node": task.node, "state": task_state(task.state),
        "attempt": task.attempt, "worker_id": task.worker_id,
        "started_at_ms": task.started_at_ms, "finished_at_ms": task.finished_at_ms,
        "error": task.error, "waiting_reason": task.waiting_reason,
        "objects_done": progress.objects_done, "bytes_done": progress.bytes_done,
        "objects_total": progress.objects_total, "bytes_total": progress.bytes_total,
        "num_skipped": task.num_skipped, "warnings": task.warnings, "problems": task.problems,
        "events": task.events,
        "keys": task.keys.iter().map(|key| json!({
            "key_id": key.key_id, "created_at": key.created_at, "host": key.host, "kdf": key.kdf,
            "current": key.current,
        })).collect::<Vec<_>>(),
    })
}

/// A job as JSON.
pub(crate) fn job_json(job: &pb::Job) -> Value {
    json!({
        "id": job.id, "kind": job_kind(job.kind), "state": job_state(job.state), "stage": job.stage,
        "schedule": job.schedule, "schedule_slot_ms": job.schedule_slot_ms, "source": job.source,
        "repository": job.repository, "created_at_ms": job.created_at_ms, "finished_at_ms": job.finished_at_ms,
        "error": job.error, "backup_id": job.backup_id,
        "phases": job.phases.iter().map(|phase| json!({
            "name": phase.name, "tasks": phase.tasks.iter().map(task_json).collect::<Vec<_>>(),
            "summary": phase.summary.map(|summary| json!({
                "num_tasks": summary.num_tasks, "num_succeeded": summary.num_succeeded,
                "num_failed": summary.num_failed, "started_at_ms": summary.started_at_ms,
                "finished_at_ms": summary.finished_at_ms, "num_objects": summary.num_objects,
                "num_bytes": summary.num_bytes,
            })),
        })).collect::<Vec<_>>(),
        "cleanup": job.cleanup.iter().map(task_json).collect::<Vec<_>>(),
    })
}

/// A backup as JSON.
pub(crate) fn backup_json(backup: &pb::Backup) -> Value {
    json!({
        "id": backup.id, "source": backup.source, "repository": backup.repository, "job_id": backup.job_id,
        "created_at_ms": backup.created_at_ms, "num_objects": backup.num_objects, "num_bytes": backup.num_bytes,
        "manifest_key": backup.manifest_key, "nodes": backup.nodes, "catalog_format": backup.catalog_format,
        "exclusions": backup.exclusions.iter().map(|exclusion| json!({
            "prefix": exclusion.prefix, "reason": exclusion.reason, "num_objects": exclusion.num_objects
        })).collect::<Vec<_>>(),
        "consistency": backup.consistency.iter().map(|point| json!({
            "node": point.node, "snapshot_sequence": point.snapshot_sequence,
            "snapshot_wal_sequence": point.snapshot_wal_sequence, "last_wal_sequence": point.last_wal_sequence,
            "required_catalog_sequence": point.required_catalog_sequence
        })).collect::<Vec<_>>(),
        "catalog_sequence": backup.catalog_sequence,
        "parent_id": backup.parent_id, "num_objects_reused": backup.num_objects_reused,
        "num_objects_read": backup.num_objects.saturating_sub(backup.num_objects_reused),
        "bytes_read": backup.bytes_read, "bytes_written": backup.bytes_written,
        "bytes_stored": backup.bytes_stored, "repository_puts": backup.repository_puts,
        "list_bytes_written": backup.list_bytes_written,
        "checkpoint_held_ms": backup.checkpoint_held_ms, "snapshot": backup.snapshot,
        "events": backup.events,
        "drills": crate::render_drill::drills_json(&backup.drills),
        "corrupt_objects": backup.corrupt_objects.iter().map(|object| json!({
            "key": object.key, "reason": object.reason
        })).collect::<Vec<_>>(),
        "phases": backup.phases.iter().map(|phase| json!({
            "name": phase.name, "started_at_ms": phase.started_at_ms, "finished_at_ms": phase.finished_at_ms,
            "num_objects": phase.num_objects, "num_bytes": phase.num_bytes
        })).collect::<Vec<_>>(),
    })
}

/// A source as JSON.
pub(crate) fn source_json(source: &pb::Source) -> Value {
    match &source.kind {
        Some(pb::source::Kind::Influxdb3Enterprise(enterprise)) => json!({
            "name": source.name, "kind": "influxdb3-enterprise", "cluster_id": enterprise.cluster_id,
            "compactor_node": enterprise.compactor_node, "data_nodes": enterprise.data_nodes,
            "http_endpoints": enterprise.http_endpoints,
        }),
        Some(pb::source::Kind::Influxdb3Core(core)) => json!({
            "name": source.name, "kind": "influxdb3-core", "node": core.node, "http_endpoint": core.http_endpoint,
        }),
        Some(pb::source::Kind::Questdb(questdb)) => json!({
            "name": source.name, "kind": "questdb", "node": questdb.node, "pg_addr": questdb.pg_addr,
        }),
        None => json!({"name": source.name, "kind": "unknown"}),
    }
}

/// A repository as JSON.
pub(crate) fn repository_json(repository: &pb::Repository) -> Value {
    json!({
        "name": repository.name, "url": repository.url, "chunk_size_bytes": repository.chunk_size_bytes,
        "pack_size_bytes": repository.pack_size_bytes, "compression_level": repository.compression_level,
        "config_id": repository.config_id,
    })
}

/// A worker as JSON.
pub(crate) fn worker_json(worker: &pb::Worker) -> Value {
    json!({"id": worker.id, "source": worker.source, "node": worker.node,
           "registered_at_ms": worker.registered_at_ms, "last_seen_ago_ms": worker.last_seen_ago_ms,
           "max_concurrent_objects": worker.max_concurrent_objects,
           "max_bytes_per_second": worker.max_bytes_per_second,
           "store_retries": worker.store_retries})
}

/// A worker's limits and retries in a phrase: `in flight ≤16 objects, read 100.0 MiB/s, 3
/// store retries` (what `bkctl workers` and `bkctl watch` show).
pub(crate) fn worker_limits(worker: &pb::Worker) -> String {
    let bandwidth = match worker.max_bytes_per_second {
        0 => "unlimited".to_string(),
        rate => format!("{}/s", human_bytes(rate)),
    };
    let retries = worker
        .store_retries
        .map(|retries| format!(", {retries} store retries"))
        .unwrap_or_default();
    format!("in flight ≤{} objects, read {bandwidth}{retries}", worker.max_concurrent_objects)
}

pub(crate) use bk_proto::support::human_bytes;

/// Prints a job as a table.
pub(crate) fn print_job(job: &pb::Job) {
    println!(
        "{} job {}  {}  source={} repo={}  backup={}",
        job_kind(job.kind),
        job.id,
        job_state(job.state),
        job.source,
        job.repository,
        or_dash(&job.backup_id)
    );
    if !job.error.is_empty() {
        println!("error: {}", job.error);
    }
    if job.phases.iter().any(|phase| phase.summary.is_some()) {
        println!("  (an older finished job: task details dropped, failed and warning tasks kept)");
    }
    for phase in &job.phases {
        match &phase.summary {
            Some(summary) => println!(
                "  phase {}  {} tasks: {} succeeded, {} failed; {} objects, {}; {}",
                phase.name,
                summary.num_tasks,
                summary.num_succeeded,
                summary.num_failed,
                summary.num_objects,
                human_bytes(summary.num_bytes),
                match (summary.started_at_ms, summary.finished_at_ms) {
                    (start, end) if start > 0 && end >= start => {
                        format!("{:.2}s", (end - start) as f64 / 1000.0)
                    }
                    _ => "did not run".to_string(),
                }
            ),
            None => println!("  phase {}", phase.name),
        }
        for task in &phase.tasks {
            print_task(task);
        }
    }
    println!("  cleanup");
    for task in &job.cleanup {
        print_task(task);
    }
}

fn print_task(task: &pb::Task) {
    let progress = task.progress.unwrap_or_default();
    let duration = match (task.started_at_ms, task.finished_at_ms) {
        (start, end) if start > 0 && end >= start => {
            format!("{:.2}s", (end - start) as f64 / 1000.0)
        }
        _ => String::new(),
    };
    println!(
        "    {:<10} {:<44} {:>7} objects {:>10} {:>8} attempt {}",
        task_state(task.state),
        task.label,
        progress.objects_done,
        human_bytes(progress.bytes_done),
        duration,
        task.attempt
    );
    if !task.error.is_empty() {
        println!("               error: {}", task.error);
    }
    if !task.waiting_reason.is_empty() {
        println!("               {}", task.waiting_reason);
    }
    for warning in &task.warnings {
        println!("               warning: {warning}");
    }
    for problem in &task.problems {
        println!("               problem: {problem}");
    }
    for event in &task.events {
        println!("               event: {event}");
    }
}

/// Prints a backup as a table.
pub(crate) fn print_backup(backup: &pb::Backup) {
    println!("backup {}", backup.id);
    println!("  source       {}", backup.source);
    println!("  repository   {}", backup.repository);
    println!("  job          {}", backup.job_id);
    println!("  objects      {}", backup.num_objects);
    println!("  bytes        {} ({})", backup.num_bytes, human_bytes(backup.num_bytes));
    println!("  catalog      {}", backup.catalog_format);
    let parent =
        if backup.parent_id.is_empty() { "none (full backup)" } else { backup.parent_id.as_str() };
    println!("  parent       {parent}");
    println!(
        "  incremental  {} objects reused unread, {} read; {} read, {} written",
        backup.num_objects_reused,
        backup.num_objects.saturating_sub(backup.num_objects_reused),
        human_bytes(backup.bytes_read),
        human_bytes(backup.bytes_written)
    );
    println!(
        "  stored       {} in the repository for the {} read ({} PUT requests); object list: {} written",
        human_bytes(backup.bytes_stored),
        human_bytes(backup.bytes_read),
        backup.repository_puts,
        human_bytes(backup.list_bytes_written)
    );
    println!("  nodes        {}", backup.nodes.join(", "));
    println!("  manifest     {}", backup.manifest_key);
    println!("  phases");
    for phase in &backup.phases {
        println!(
            "    {:<10} {:>7} objects {:>10}  {:.2}s",
            phase.name,
            phase.num_objects,
            human_bytes(phase.num_bytes),
            phase.finished_at_ms.saturating_sub(phase.started_at_ms) as f64 / 1000.0
        );
    }
    if !backup.consistency.is_empty() {
        println!("  consistency points (what a restore restarts from)");
        for point in &backup.consistency {
            println!(
                "    {:<12} snapshot {:>6} covers WAL <= {:<8} WAL {}..={} contiguous, needs catalog >= {}",
                point.node,
                point.snapshot_sequence,
                point.snapshot_wal_sequence,
                point.snapshot_wal_sequence + 1,
                point.last_wal_sequence,
                point.required_catalog_sequence
            );
        }
        println!("  catalog sequence {}", backup.catalog_sequence);
    }
    if !backup.snapshot.is_empty() {
        println!("  copied from {}", backup.snapshot);
    }
    if backup.checkpoint_held_ms > 0 {
        println!(
            "  QuestDB held in checkpoint mode {:.3}s",
            backup.checkpoint_held_ms as f64 / 1000.0
        );
    }
    if !backup.events.is_empty() {
        println!("  events");
        for event in &backup.events {
            println!("    {event}");
        }
    }
    if !backup.corrupt_objects.is_empty() {
        println!(
            "  DAMAGED: {} object(s) failed their format check and were committed as they are \
             (--allow-corrupt); a restore gives them back damaged",
            backup.corrupt_objects.len()
        );
        for object in &backup.corrupt_objects {
            println!("    {}", object.reason);
        }
    }
    if !backup.exclusions.is_empty() {
        println!("  excluded");
        for exclusion in &backup.exclusions {
            println!(
                "    {} ({} objects): {}",
                exclusion.prefix, exclusion.num_objects, exclusion.reason
            );
        }
    }
    crate::render_drill::print_drills(&backup.drills);
}

/// The cluster status as JSON.
pub(crate) fn cluster_json(status: &pb::ClusterStatusResponse) -> Value {
    json!({
        "replica_id": status.replica_id, "leader_id": status.leader_id, "term": status.term,
        "last_applied_index": status.last_applied_index, "last_log_index": status.last_log_index,
        "snapshot_index": status.snapshot_index,
        "replicas": status.replicas.iter().map(|replica| json!({
            "id": replica.id, "address": replica.address, "role": replica.role,
            "matched_index": replica.matched_index, "lag": replica.lag,
        })).collect::<Vec<_>>(),
    })
}

/// Prints the cluster status.
pub(crate) fn print_cluster(status: &pb::ClusterStatusResponse) {
    println!(
        "answered by replica {}: leader {}, term {}, applied {} of {} (snapshot at {})",
        status.replica_id,
        status.leader_id,
        status.term,
        status.last_applied_index,
        status.last_log_index,
        status.snapshot_index
    );
    for replica in &status.replicas {
        let lag = replica.lag.map(|lag| format!("lag {lag}")).unwrap_or_default();
        println!("  {:>3}  {:<22} {:<9} {lag}", replica.id, replica.address, replica.role);
    }
}

/// A schedule as JSON.
pub(crate) fn schedule_json(schedule: &pb::Schedule) -> Value {
    json!({
        "name": schedule.name, "source": schedule.source, "repository": schedule.repository, "cron": schedule.cron,
        "prune_keep_last": schedule.prune_keep_last, "prune_keep_daily": schedule.prune_keep_daily,
        "prune_keep_weekly": schedule.prune_keep_weekly, "prune_keep_monthly": schedule.prune_keep_monthly,
        "last_run_ms": schedule.last_run_ms, "drill": schedule.drill,
    })
}

/// `-` for an empty field (a job that names no backup), the value otherwise.
pub(crate) fn or_dash(value: &str) -> &str {
    if value.is_empty() {
        "-"
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sizes_parse_and_print() {
        let cases = [("16MiB", 16 << 20), ("2GiB", 2 << 30), ("1000", 1000), ("1.5KiB", 1536)];
        for (text, bytes) in cases {
            assert_eq!(bk_proto::support::parse_byte_size(text), Ok(bytes), "{text}");
        }
        assert!(bk_proto::support::parse_byte_size("12 parsecs").unwrap_err().contains("unit"));
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
