//! `bkctl demo`: the whole system on one machine, in one process, over real gRPC on loopback.
//!
//! Generates a sample InfluxDB 3 Enterprise cluster (3 data nodes + compactor, v3 catalog,
//! licence), starts a single-replica coordinator and one worker per node on port-0 listeners,
//! registers the source and a local repository, backs the cluster up with live progress, and
//! reports what happened and where the files are.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use bk_coordinator::CoordinatorConfig;
use bk_proto::pb;
use bk_tests::layout::{generate, LayoutParams};
use bk_worker::WorkerConfig;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::client::Client;
use crate::render::{self, human_bytes, parse_size};

const SOURCE: &str = "demo";
const REPOSITORY: &str = "local";

/// Runs the demo.
///
/// # Errors
/// When any step fails; the message names the step.
pub(crate) async fn run_demo(args: DemoArgs, json: bool) -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        bk_proto::support::init_tracing(bk_proto::support::LogFormat::Text);
    }
    let size = parse_size(&args.size).map_err(anyhow::Error::msg)?;
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!(
            "bk-demo-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        )),
    };
    let cluster_dir = dir.join("cluster");
    let repository_dir = dir.join("repository");
    anyhow::ensure!(
        !cluster_dir.exists(),
        "`{}` already exists: pass a new --dir",
        cluster_dir.display()
    );
    std::fs::create_dir_all(&cluster_dir)
        .with_context(|| format!("cannot create `{}`", cluster_dir.display()))?;
    let cluster_dir = cluster_dir.canonicalize()?;

    let params = LayoutParams::enterprise(size);
    let generated =
        generate(&cluster_dir, &params).context("failed to generate the sample cluster")?;
    if !json {
        println!(
            "generated a sample InfluxDB 3 Enterprise cluster: {} objects, {} in {}",
            generated.keys.len(),
            human_bytes(generated.num_bytes),
            cluster_dir.display()
        );
    }

    let shutdown = CancellationToken::new();
    let mut services = JoinSet::new();
    let endpoint = start_coordinator(&dir.join("coordinator"), &shutdown, &mut services).await?;
    let mut nodes = params.data_nodes.clone();
    nodes.extend(params.compactor_node.clone());
    for node in &nodes {
        let config = WorkerConfig::new(
            SOURCE,
            node,
            &format!("file://{}", cluster_dir.display()),
            vec![endpoint.clone()],
        );
        services.spawn(bk_worker::run(
            config,
            std::env::vars().collect(),
            shutdown.child_token(),
        ));
    }

    let outcome = backup(&endpoint, &params, &repository_dir, json).await;
    shutdown.cancel();
    while services.join_next().await.is_some() {}
    let (job, backup, elapsed) = outcome?;
    report(
        json,
        &job,
        &backup,
        elapsed,
        &dir,
        &cluster_dir,
        &repository_dir,
    );
    Ok(())
}

async fn start_coordinator(
    data_dir: &Path,
    shutdown: &CancellationToken,
    services: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port")?;
    let endpoint = listener.local_addr()?.to_string();
    let config = CoordinatorConfig::for_test(data_dir.to_path_buf());
    services.spawn(bk_coordinator::run(
        config,
        listener,
        shutdown.child_token(),
    ));
    Ok(endpoint)
}

async fn backup(
    endpoint: &str,
    params: &LayoutParams,
    repository_dir: &Path,
    json: bool,
) -> anyhow::Result<(pb::Job, pb::Backup, f64)> {
    let client = Client::new(endpoint)?;
    let failed = |step: &'static str| {
        move |status: tonic::Status| anyhow::anyhow!("{step}: {}", status.message())
    };
    let source = pb::Source {
        name: SOURCE.to_string(),
        kind: Some(pb::source::Kind::Influxdb3Enterprise(
            pb::InfluxDb3Enterprise {
                cluster_id: params.cluster_id.clone().unwrap_or_default(),
                compactor_node: params.compactor_node.clone().unwrap_or_default(),
                data_nodes: params.data_nodes.clone(),
                http_endpoints: Default::default(),
            },
        )),
    };
    client
        .add_source(pb::AddSourceRequest {
            source: Some(source),
        })
        .await
        .map_err(failed("source add"))?;
    std::fs::create_dir_all(repository_dir)?;
    let repository = pb::Repository {
        name: REPOSITORY.to_string(),
        url: format!("file://{}", repository_dir.canonicalize()?.display()),
        chunk_size_bytes: 0,
    };
    client
        .add_repository(pb::AddRepositoryRequest {
            repository: Some(repository),
        })
        .await
        .map_err(failed("repo add"))?;
    let started = Instant::now();
    let request = pb::SubmitBackupRequest {
        source: SOURCE.to_string(),
        repository: REPOSITORY.to_string(),
    };
    let job_id = client
        .submit_backup(request)
        .await
        .map_err(failed("submit backup"))?
        .job_id;
    if !json {
        println!(
            "backup job {job_id} submitted; workers for {} are copying",
            params.data_nodes.join(", ")
        );
    }
    let job = crate::watch::watch_job(&client, &job_id, !json).await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        render::job_state(job.state) == "succeeded",
        "backup job {job_id} failed: {}",
        job.error
    );
    let backup = client
        .get_backup(pb::GetBackupRequest {
            backup_id: job.backup_id.clone(),
        })
        .await
        .map_err(failed("show backup"))?;
    Ok((job, backup, elapsed))
}

fn report(
    json: bool,
    job: &pb::Job,
    backup: &pb::Backup,
    elapsed: f64,
    dir: &Path,
    cluster: &Path,
    repository: &Path,
) {
    let paths = |path: &Path| PathBuf::from(path).display().to_string();
    if json {
        let document = json!({
            "job": render::job_json(job), "backup": render::backup_json(backup), "elapsed_seconds": elapsed,
            "paths": {"demo": paths(dir), "cluster": paths(cluster), "repository": paths(repository)},
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
        return;
    }
    println!();
    println!(
        "backup {} committed in {elapsed:.2}s: {} objects, {}",
        backup.id,
        backup.num_objects,
        human_bytes(backup.num_bytes)
    );
    println!("phases (each starts only after every task of the previous one succeeded):");
    for phase in &backup.phases {
        let seconds = phase.finished_at_ms.saturating_sub(phase.started_at_ms) as f64 / 1000.0;
        println!(
            "  {:<10} {:>6} objects {:>11} {seconds:>7.2}s",
            phase.name,
            phase.num_objects,
            human_bytes(phase.num_bytes)
        );
    }
    println!("catalog layout: {}", backup.catalog_format);
    for exclusion in &backup.exclusions {
        println!(
            "excluded {} ({} objects): {}",
            exclusion.prefix, exclusion.num_objects, exclusion.reason
        );
    }
    println!("files:");
    println!("  sample cluster  {}", cluster.display());
    println!("  repository      {}", repository.display());
    println!(
        "  manifest        {}/{}",
        repository.display(),
        backup.manifest_key
    );
    println!("  coordinator     {}", dir.join("coordinator").display());
}
