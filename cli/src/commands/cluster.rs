//! Workers, the coordinator cluster, schedules and the status screen.

use bk_proto::pb;
use serde_json::Value;

use super::context::CommandContext;
use crate::cli::{ClusterCommand, ScheduleCommand};
use crate::output::emit;
use crate::render;

/// `bkctl workers`.
pub(super) async fn workers(ctx: &CommandContext) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    let workers = client.list_workers(pb::ListWorkersRequest {}).await.map_err(failed)?.workers;
    emit(output, Value::Array(workers.iter().map(render::worker_json).collect()), || {
        for worker in &workers {
            let seen = worker
                .last_seen_ago_ms
                .map(|ms| format!("{:.1}s ago", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<28} source={:<16} node={:<16} last seen {seen:<10} {}",
                worker.id,
                worker.source,
                worker.node,
                render::worker_limits(worker)
            );
        }
    });
    Ok(())
}

/// `bkctl cluster …`.
pub(super) async fn cluster(ctx: &CommandContext, command: ClusterCommand) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    match command {
        ClusterCommand::Status => {
            let status =
                client.cluster_status(pb::ClusterStatusRequest {}).await.map_err(failed)?;
            emit(output, render::cluster_json(&status), || render::print_cluster(&status));
        }
        ClusterCommand::AddReplica { replica_id, address } => {
            let request = pb::AddReplicaRequest { replica_id, address: address.clone() };
            client.add_replica(request).await.map_err(failed)?;
            emit(
                output,
                serde_json::json!({"replica_id": replica_id, "address": address, "added": true}),
                || println!("replica {replica_id} at {address} joined as a voter"),
            );
        }
        ClusterCommand::RemoveReplica { replica_id } => {
            client.remove_replica(pb::RemoveReplicaRequest { replica_id }).await.map_err(failed)?;
            emit(output, serde_json::json!({"replica_id": replica_id, "removed": true}), || {
                println!("replica {replica_id} removed")
            });
        }
    }
    Ok(())
}

/// `bkctl schedule …`.
pub(super) async fn schedule(ctx: &CommandContext, command: ScheduleCommand) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    match command {
        ScheduleCommand::Add(args) => {
            let name = args.name.clone();
            let schedule = pb::Schedule {
                name: args.name,
                source: args.source,
                repository: args.repository,
                cron: args.cron,
                prune_keep_last: args.prune_keep_last,
                prune_keep_daily: args.prune_keep_daily,
                prune_keep_weekly: args.prune_keep_weekly,
                prune_keep_monthly: args.prune_keep_monthly,
                last_run_ms: 0,
                drill: args.drill,
            };
            client
                .add_schedule(pb::AddScheduleRequest { schedule: Some(schedule) })
                .await
                .map_err(failed)?;
            emit(output, serde_json::json!({"schedule": name, "added": true}), || {
                println!("schedule `{name}` registered")
            });
        }
        ScheduleCommand::List => {
            let schedules =
                client.list_schedules(pb::ListSchedulesRequest {}).await.map_err(failed)?.schedules;
            emit(
                output,
                Value::Array(schedules.iter().map(render::schedule_json).collect()),
                || {
                    for schedule in &schedules {
                        println!(
                            "{:<16} {:<18} source={:<12} repo={:<12} last run {}",
                            schedule.name,
                            schedule.cron,
                            schedule.source,
                            schedule.repository,
                            schedule.last_run_ms
                        );
                    }
                },
            );
        }
        ScheduleCommand::Remove { name } => {
            client
                .remove_schedule(pb::RemoveScheduleRequest { name: name.clone() })
                .await
                .map_err(failed)?;
            emit(output, serde_json::json!({"schedule": name, "removed": true}), || {
                println!("schedule `{name}` removed")
            });
        }
    }
    Ok(())
}

/// `bkctl status`.
pub(super) async fn status(ctx: &CommandContext) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    let status = crate::status::gather(client).await.map_err(failed)?;
    emit(output, status.clone(), || crate::status::print(&status));
    Ok(())
}
