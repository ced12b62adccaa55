//! What each command does.

use std::collections::HashMap;

use anyhow::{bail, Context};
use bk_proto::pb;
use serde_json::Value;

use crate::call_error::{call_failed, Transport};
use crate::cli::{
    Cli, ClusterCommand, Command, OutputFormat, RepoCommand, ScheduleCommand, SourceAddArgs,
    SourceCommand, SourceKind, SubmitCommand,
};
use crate::client::Client;
use crate::render;

/// Runs a command.
///
/// # Errors
/// A one-line error for the user; the process exits non-zero.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let output = cli.output;
    if let Command::Demo(args) = cli.command {
        return crate::demo::run_demo(args, output).await;
    }
    if let Command::Completion { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "bkctl", &mut std::io::stdout());
        return Ok(());
    }
    let tls_files = cli.tls_files();
    let client = Client::with_token(&cli.endpoint, cli.token.as_deref(), &tls_files)?;
    let transport = match (tls_files.is_enabled(), tls_files.cert_file.is_some()) {
        (false, _) => Transport::Plaintext,
        (true, false) => Transport::Tls,
        (true, true) => Transport::MutualTls,
    };
    let failed = |status: tonic::Status| call_failed(status, transport);
    match cli.command {
        Command::Source(SourceCommand::Add(args)) => {
            let source = source_from_args(args)?;
            let name = source.name.clone();
            client
                .add_source(pb::AddSourceRequest { source: Some(source) })
                .await
                .map_err(failed)?;
            emit(output, serde_json::json!({"source": name, "added": true}), || {
                println!("source `{name}` registered")
            });
        }
        Command::Sources => {
            let sources =
                client.list_sources(pb::ListSourcesRequest {}).await.map_err(failed)?.sources;
            let documents: Vec<Value> = sources.iter().map(render::source_json).collect();
            emit(output, Value::Array(documents.clone()), || {
                for document in &documents {
                    println!("{document}");
                }
            });
        }
        Command::Repo(RepoCommand::Key(command)) => {
            crate::keys::run(&client, output, command, failed).await?;
        }
        Command::Repo(RepoCommand::Check { repository, read_data }) => {
            crate::keys::check(&client, output, repository, read_data, failed).await?;
        }
        Command::Repo(RepoCommand::Add { name, url, chunk_size, pack_size, compression_level }) => {
            let repository = pb::Repository {
                name: name.clone(),
                url,
                chunk_size_bytes: chunk_size.unwrap_or(0),
                pack_size_bytes: pack_size.unwrap_or(0),
                compression_level,
                config_id: String::new(),
            };
            client
                .add_repository(pb::AddRepositoryRequest { repository: Some(repository) })
                .await
                .map_err(failed)?;
            emit(output, serde_json::json!({"repository": name, "added": true}), || {
                println!("repository `{name}` registered")
            });
        }
        Command::Repos => {
            let repositories = client
                .list_repositories(pb::ListRepositoriesRequest {})
                .await
                .map_err(failed)?
                .repositories;
            emit(
                output,
                Value::Array(repositories.iter().map(render::repository_json).collect()),
                || {
                    for repository in &repositories {
                        println!("{:<20} {}", repository.name, repository.url);
                    }
                },
            );
        }
        Command::Submit(SubmitCommand::Backup {
            source,
            repository,
            wait,
            adopt_checkpoint,
            full,
            allow_corrupt,
        }) => {
            let response = client
                .submit_backup(pb::SubmitBackupRequest {
                    source,
                    repository,
                    adopt_checkpoint,
                    full,
                    allow_corrupt,
                })
                .await
                .map_err(failed)?;
            submitted(&client, output, &response.job_id, wait).await?;
        }
        Command::Submit(SubmitCommand::Restore(args)) => {
            let request = restore_request(
                args.backup_id,
                &args.targets,
                args.nodes_stopped,
                args.wipe,
                args.resume,
            )?;
            let job_id = client.submit_restore(request).await.map_err(failed)?.job_id;
            submitted(&client, output, &job_id, args.wait).await?;
        }
        Command::Submit(SubmitCommand::Prune(args)) => {
            let request = pb::SubmitPruneRequest {
                repository: args.repository,
                source: args.source,
                keep_last: args.keep_last,
                keep_daily: args.keep_daily,
                keep_weekly: args.keep_weekly,
                keep_monthly: args.keep_monthly,
                dry_run: args.dry_run,
                max_unused_percent: args.max_unused,
            };
            let job_id = client.submit_prune(request).await.map_err(failed)?.job_id;
            submitted(&client, output, &job_id, args.wait).await?;
        }
        Command::Submit(SubmitCommand::Drill { backup_id, source, repository, wait }) => {
            let request = pb::SubmitDrillRequest {
                backup_id: backup_id.unwrap_or_default(),
                source: source.unwrap_or_default(),
                repository: repository.unwrap_or_default(),
            };
            let job_id = client.submit_drill(request).await.map_err(failed)?.job_id;
            submitted(&client, output, &job_id, wait).await?;
        }
        Command::Submit(SubmitCommand::Verify { backup_id, deep, wait }) => {
            let job_id = client
                .submit_verify(pb::SubmitVerifyRequest { backup_id, deep })
                .await
                .map_err(failed)?
                .job_id;
            submitted(&client, output, &job_id, wait).await?;
        }
        Command::Cancel { job_id } => {
            client
                .cancel_job(pb::CancelJobRequest { job_id: job_id.clone() })
                .await
                .map_err(failed)?;
            emit(output, serde_json::json!({"job_id": job_id, "cancelled": true}), || {
                println!(
                    "job {job_id} cancelled; its cleanup tasks still run (`bkctl watch {job_id}`)"
                )
            });
        }
        Command::Watch { job_id } => {
            let job = crate::watch::watch_job(&client, &job_id, output.is_table()).await?;
            finish_job(output, &job)?;
        }
        Command::Job { job_id } => {
            let job = client.get_job(pb::GetJobRequest { job_id }).await.map_err(failed)?;
            emit(output, render::job_json(&job), || render::print_job(&job));
        }
        Command::Jobs { limit } => {
            let jobs = client.list_jobs(pb::ListJobsRequest { limit }).await.map_err(failed)?.jobs;
            emit(output, Value::Array(jobs.iter().map(render::job_json).collect()), || {
                for job in &jobs {
                    println!(
                        "{}  {:<10} source={:<16} repo={:<12} backup={}",
                        job.id,
                        render::job_state(job.state),
                        job.source,
                        job.repository,
                        job.backup_id
                    );
                }
            });
        }
        Command::Backups { source } => {
            let request = pb::ListBackupsRequest { source: source.unwrap_or_default() };
            let backups = client.list_backups(request).await.map_err(failed)?.backups;
            emit(output, Value::Array(backups.iter().map(render::backup_json).collect()), || {
                let drilled = crate::render_drill::newest_drilled(&backups);
                for backup in &backups {
                    let mark = drilled
                        .get(backup.source.as_str())
                        .filter(|(id, _)| *id == backup.id)
                        .map(|(_, drill)| format!("  {}", crate::render_drill::drill_mark(drill)))
                        .unwrap_or_default();
                    println!(
                        "{}  source={:<16} {:>8} objects {:>10}{mark}",
                        backup.id,
                        backup.source,
                        backup.num_objects,
                        render::human_bytes(backup.num_bytes)
                    );
                }
            });
        }
        Command::Show { backup_id } => {
            let backup =
                client.get_backup(pb::GetBackupRequest { backup_id }).await.map_err(failed)?;
            emit(output, render::backup_json(&backup), || render::print_backup(&backup));
        }
        Command::Workers => {
            let workers =
                client.list_workers(pb::ListWorkersRequest {}).await.map_err(failed)?.workers;
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
        }
        Command::Cluster(ClusterCommand::Status) => {
            let status =
                client.cluster_status(pb::ClusterStatusRequest {}).await.map_err(failed)?;
            emit(output, render::cluster_json(&status), || render::print_cluster(&status));
        }
        Command::Cluster(ClusterCommand::AddReplica { replica_id, address }) => {
            let request = pb::AddReplicaRequest { replica_id, address: address.clone() };
            client.add_replica(request).await.map_err(failed)?;
            emit(
                output,
                serde_json::json!({"replica_id": replica_id, "address": address, "added": true}),
                || println!("replica {replica_id} at {address} joined as a voter"),
            );
        }
        Command::Cluster(ClusterCommand::RemoveReplica { replica_id }) => {
            client.remove_replica(pb::RemoveReplicaRequest { replica_id }).await.map_err(failed)?;
            emit(output, serde_json::json!({"replica_id": replica_id, "removed": true}), || {
                println!("replica {replica_id} removed")
            });
        }
        Command::Schedule(ScheduleCommand::Add(args)) => {
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
        Command::Schedule(ScheduleCommand::List) => {
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
        Command::Schedule(ScheduleCommand::Remove { name }) => {
            client
                .remove_schedule(pb::RemoveScheduleRequest { name: name.clone() })
                .await
                .map_err(failed)?;
            emit(output, serde_json::json!({"schedule": name, "removed": true}), || {
                println!("schedule `{name}` removed")
            });
        }
        Command::Status => {
            let status = crate::status::gather(&client).await.map_err(failed)?;
            emit(output, status.clone(), || crate::status::print(&status));
        }
        Command::Demo(_) | Command::Completion { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// Prints the job id, or with `wait` follows the job and prints its outcome.
async fn submitted(
    client: &Client,
    output: OutputFormat,
    job_id: &str,
    wait: bool,
) -> anyhow::Result<()> {
    if !wait {
        emit(output, serde_json::json!({"job_id": job_id}), || println!("{job_id}"));
        return Ok(());
    }
    if output.is_table() {
        eprintln!("job {job_id}");
    }
    let job = crate::watch::watch_job(client, job_id, output.is_table()).await?;
    finish_job(output, &job)
}

/// `--target URL` (default) and `--target NODE=URL` (per node) into a request.
fn restore_request(
    backup_id: String,
    targets: &[String],
    nodes_stopped: bool,
    wipe: bool,
    resume: bool,
) -> anyhow::Result<pb::SubmitRestoreRequest> {
    let mut request =
        pb::SubmitRestoreRequest { backup_id, nodes_stopped, wipe, resume, ..Default::default() };
    for target in targets {
        match target.split_once('=') {
            Some((node, url)) if !node.contains("://") => {
                request.node_targets.insert(node.to_string(), url.to_string());
            }
            _ if request.target.is_empty() => request.target = target.clone(),
            _ => bail!("two default targets given (`{}` and `{target}`): use NODE=URL for per-node targets", request.target),
        }
    }
    Ok(request)
}

/// Prints the job's outcome; fails when the job failed.
fn finish_job(output: OutputFormat, job: &pb::Job) -> anyhow::Result<()> {
    emit(output, render::job_json(job), || render::print_job(job));
    if render::job_state(job.state) != "succeeded" {
        bail!("job {} {}: {}", job.id, render::job_state(job.state), job.error);
    }
    Ok(())
}

/// Prints `document` as `-o` asks: the table (drawn by `table`), JSON or YAML.
pub(crate) fn emit(output: OutputFormat, document: Value, table: impl FnOnce()) {
    match output {
        OutputFormat::Yaml => {
            print!("{}", yaml_serde::to_string(&document).unwrap_or_else(|_| document.to_string()))
        }
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string())
        ),
        OutputFormat::Table => table(),
    }
}

fn source_from_args(args: SourceAddArgs) -> anyhow::Result<pb::Source> {
    let mut http_endpoints = HashMap::new();
    for pair in &args.http_endpoints {
        let (node, url) =
            pair.split_once('=').with_context(|| format!("`--http {pair}` must be NODE=URL"))?;
        http_endpoints.insert(node.to_string(), url.to_string());
    }
    let kind = match args.kind {
        SourceKind::Influxdb3Enterprise => {
            let cluster_id =
                args.cluster_id.context("--kind influxdb3-enterprise needs --cluster-id")?;
            let compactor_node =
                args.compactor.context("--kind influxdb3-enterprise needs --compactor NODE")?;
            if args.nodes.is_empty() {
                bail!("--kind influxdb3-enterprise needs --nodes node1,node2,… (the data nodes)");
            }
            pb::source::Kind::Influxdb3Enterprise(pb::InfluxDb3Enterprise {
                cluster_id,
                compactor_node,
                data_nodes: args.nodes,
                http_endpoints,
            })
        }
        SourceKind::Questdb => {
            let [node] = args.nodes.as_slice() else {
                bail!("--kind questdb needs exactly one --nodes NODE (the node id its worker registers under)");
            };
            let pg_addr = args.pg_addr.context(
                "--kind questdb needs --pg HOST:PORT (QuestDB's PostgreSQL wire endpoint)",
            )?;
            pb::source::Kind::Questdb(pb::QuestDb { node: node.clone(), pg_addr })
        }
        SourceKind::Influxdb3Core => {
            let [node] = args.nodes.as_slice() else {
                bail!("--kind influxdb3-core needs exactly one --nodes NODE");
            };
            let http_endpoint = http_endpoints.remove(node).unwrap_or_default();
            pb::source::Kind::Influxdb3Core(pb::InfluxDb3Core { node: node.clone(), http_endpoint })
        }
    };
    Ok(pb::Source { name: args.name, kind: Some(kind) })
}
