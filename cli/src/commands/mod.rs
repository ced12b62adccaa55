//! What each command does: [`run`] sets up the client and the output format and dispatches;
//! one module per noun does the work.
//!
//! - [`catalog`]: sources and repositories.
//! - [`submit`]: submitting jobs.
//! - [`jobs`]: following, cancelling and listing jobs, listing and showing backups.
//! - [`cluster`]: workers, the coordinator cluster, schedules and the status screen.

mod catalog;
mod cluster;
mod jobs;
mod submit;

use std::collections::HashMap;

use anyhow::{bail, Context as _};
use bk_proto::pb;
use serde_json::Value;

use crate::call_error::{call_failed, Transport};
use crate::cli::{
    Cli, ClusterCommand, Command, OutputFormat, RepoCommand, ScheduleCommand, SourceAddArgs,
    SourceCommand, SourceKind, SubmitCommand,
};
use crate::client::Client;
use crate::render;

/// What every command is given: the client, the `-o` format and how to explain a failed call.
pub(crate) struct CommandContext {
    client: Client,
    output: OutputFormat,
    transport: Transport,
}

impl CommandContext {
    /// A failed call as the user reads it (with the transport in the hint).
    fn failed(&self, status: tonic::Status) -> anyhow::Error {
        call_failed(status, self.transport)
    }
}

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
    let ctx = CommandContext { client, output, transport };
    match cli.command {
        Command::Source(command) => catalog::source(&ctx, command).await,
        Command::Sources => catalog::sources(&ctx).await,
        Command::Repo(command) => catalog::repo(&ctx, command).await,
        Command::Repos => catalog::repos(&ctx).await,
        Command::Submit(command) => submit::submit(&ctx, command).await,
        Command::Cancel { job_id } => jobs::cancel(&ctx, job_id).await,
        Command::Watch { job_id } => jobs::watch(&ctx, job_id).await,
        Command::Job { job_id } => jobs::job(&ctx, job_id).await,
        Command::Jobs { limit } => jobs::jobs(&ctx, limit).await,
        Command::Backups { source } => jobs::backups(&ctx, source).await,
        Command::Show { backup_id } => jobs::show(&ctx, backup_id).await,
        Command::Workers => cluster::workers(&ctx).await,
        Command::Cluster(command) => cluster::cluster(&ctx, command).await,
        Command::Schedule(command) => cluster::schedule(&ctx, command).await,
        Command::Status => cluster::status(&ctx).await,
        Command::Demo(_) | Command::Completion { .. } => unreachable!("handled above"),
    }
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
