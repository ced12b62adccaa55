//! `bkctl demo`: the whole system on one machine, in one process, over real gRPC on loopback.
//!
//! Generates a sample InfluxDB 3 Enterprise cluster (3 data nodes + compactor, v3 catalog,
//! licence), starts a single-replica coordinator and one worker per node on port-0 listeners,
//! registers the source and a local repository, backs the cluster up with live progress,
//! restores the backup into a fresh directory, compares it with the source byte for byte, and
//! reports what happened and where the files are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use bk_coordinator::CoordinatorConfig;
use bk_proto::pb;
use bk_sample::layout::{generate, LayoutParams};
use bk_worker::WorkerConfig;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::{DemoArgs, OutputFormat};
use crate::client::Client;
use bk_proto::support::parse_byte_size;

use crate::render::{self, human_bytes};

const SOURCE: &str = "demo";
const REPOSITORY: &str = "local";

/// Where the demo puts things.
/// A random passphrase for the demo's repository, in a file only the user can read (the workers
/// read it; the coordinator never sees it).
fn demo_passphrase(demo: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = demo.join("repository-passphrase");
    let passphrase: String = (0..4).map(|_| ulid::Ulid::new().to_string()).collect();
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(passphrase.as_bytes()))
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(path)
}

struct Paths {
    demo: PathBuf,
    cluster: PathBuf,
    repository: PathBuf,
    restored: PathBuf,
}

/// How the restored tree compares with the source (minus the backup's exclusions).
struct Comparison {
    num_objects: usize,
    num_bytes: u64,
    num_excluded: usize,
    differences: Vec<String>,
}

/// Runs the demo.
///
/// # Errors
/// When any step fails (the message names the step), or the restore differs from the source.
pub(crate) async fn run_demo(args: DemoArgs, output: OutputFormat) -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        bk_proto::support::init_tracing(bk_proto::support::LogFormat::Text);
    }
    let size = parse_byte_size(&args.size).map_err(anyhow::Error::msg)?;
    let demo = match args.dir {
        Some(dir) => std::path::absolute(dir)?,
        None => std::env::temp_dir()
            .join(format!("bk-demo-{}", ulid::Ulid::new().to_string().to_lowercase())),
    };
    let paths = Paths {
        cluster: demo.join("cluster"),
        repository: demo.join("repository"),
        restored: demo.join("restored"),
        demo,
    };
    anyhow::ensure!(
        !paths.cluster.exists(),
        "`{}` already exists: pass a new --dir",
        paths.cluster.display()
    );
    std::fs::create_dir_all(&paths.cluster)
        .with_context(|| format!("cannot create `{}`", paths.cluster.display()))?;
    let params = LayoutParams::enterprise(size);
    let generated =
        generate(&paths.cluster, &params).context("failed to generate the sample cluster")?;
    if output.is_table() {
        println!(
            "generated a sample InfluxDB 3 Enterprise cluster: {} objects, {} in {}",
            generated.keys.len(),
            human_bytes(generated.num_bytes),
            paths.cluster.display()
        );
    }

    let shutdown = CancellationToken::new();
    let mut services = JoinSet::new();
    let endpoint =
        start_coordinator(&paths.demo.join("coordinator"), &shutdown, &mut services).await?;
    let mut nodes = params.data_nodes.clone();
    nodes.extend(params.compactor_node.clone());
    let passphrase_file = demo_passphrase(&paths.demo)?;
    for node in &nodes {
        let store_url = format!("file://{}", paths.cluster.display());
        let mut config = WorkerConfig::new(SOURCE, node, &store_url, vec![endpoint.clone()]);
        config.repository_password_file = Some(passphrase_file.clone());
        if *node == nodes[0] {
            // Scratch for the restore drill (offline checks: the demo has no database binary).
            let scratch = paths.demo.join("drill-scratch");
            config.drill = Some(bk_worker::drill::config::DrillConfig::new(scratch));
        }
        services.spawn(bk_worker::run(config, std::env::vars().collect(), shutdown.child_token()));
    }
    let outcome = async {
        let client = Client::new(&endpoint)?;
        let (backup_job, backup, backup_seconds) = backup(&client, &params, &paths, output).await?;
        let (restore_job, restore_seconds) = restore(&client, &backup, &paths, output).await?;
        let drilled = drill(&client, &backup, output).await?;
        Ok::<_, anyhow::Error>((backup_job, drilled, backup_seconds, restore_job, restore_seconds))
    }
    .await;
    shutdown.cancel();
    while services.join_next().await.is_some() {}
    let (backup_job, backup, backup_seconds, restore_job, restore_seconds) = outcome?;
    let comparison = compare(&paths.cluster, &paths.restored, &backup)?;
    let document = json!({
        "job": render::job_json(&backup_job),
        "backup": render::backup_json(&backup),
        "elapsed_seconds": backup_seconds,
        "restore": restore_document(&restore_job, restore_seconds, &comparison),
        "paths": {
            "demo": paths.demo.display().to_string(), "cluster": paths.cluster.display().to_string(),
            "repository": paths.repository.display().to_string(), "restored": paths.restored.display().to_string(),
        },
    });
    crate::output::emit(output, document, || {
        print_backup(&backup, backup_seconds, &paths);
        print_restore(restore_seconds, &comparison, &paths);
        println!();
        crate::render_drill::print_drills(&backup.drills);
    });
    anyhow::ensure!(comparison.differences.is_empty(), "the restored tree differs from the source");
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
    services.spawn(bk_coordinator::run(config, listener, shutdown.child_token()));
    Ok(endpoint)
}

fn step(name: &'static str) -> impl Fn(tonic::Status) -> anyhow::Error {
    move |status| anyhow::anyhow!("{name}: {}", status.message())
}

async fn backup(
    client: &Client,
    params: &LayoutParams,
    paths: &Paths,
    output: OutputFormat,
) -> anyhow::Result<(pb::Job, pb::Backup, f64)> {
    let enterprise = pb::InfluxDb3Enterprise {
        cluster_id: params.cluster_id.clone().unwrap_or_default(),
        compactor_node: params.compactor_node.clone().unwrap_or_default(),
        data_nodes: params.data_nodes.clone(),
        http_endpoints: Default::default(),
    };
    let source = pb::Source {
        name: SOURCE.to_string(),
        kind: Some(pb::source::Kind::Influxdb3Enterprise(enterprise)),
    };
    client
        .add_source(pb::AddSourceRequest { source: Some(source) })
        .await
        .map_err(step("source add"))?;
    let repository = pb::Repository {
        name: REPOSITORY.to_string(),
        url: format!("file://{}", paths.repository.display()),
        chunk_size_bytes: 0,
        pack_size_bytes: 0,
        compression_level: None,
        config_id: String::new(),
    };
    client
        .add_repository(pb::AddRepositoryRequest { repository: Some(repository) })
        .await
        .map_err(step("repo add"))?;
    let started = Instant::now();
    let request = pb::SubmitBackupRequest {
        source: SOURCE.to_string(),
        repository: REPOSITORY.to_string(),
        adopt_checkpoint: false,
        full: false,
        allow_corrupt: false,
    };
    let job_id = client.submit_backup(request).await.map_err(step("submit backup"))?.job_id;
    if output.is_table() {
        println!("backup job {job_id} submitted; a worker per node is copying");
    }
    let job = crate::watch::watch_job(client, &job_id, output.is_table()).await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        render::job_state(job.state) == "succeeded",
        "backup job {job_id} failed: {}",
        job.error
    );
    let backup = client
        .get_backup(pb::GetBackupRequest { backup_id: job.backup_id.clone(), local: false })
        .await
        .map_err(step("show backup"))?;
    Ok((job, backup, elapsed))
}

/// Drills the backup (restore into scratch, offline checks) and returns the backup with it.
async fn drill(
    client: &Client,
    backup: &pb::Backup,
    output: OutputFormat,
) -> anyhow::Result<pb::Backup> {
    let request = pb::SubmitDrillRequest { backup_id: backup.id.clone(), ..Default::default() };
    let job_id = client.submit_drill(request).await.map_err(step("submit drill"))?.job_id;
    if output.is_table() {
        println!("drill job {job_id} submitted: restore into scratch, check the files, wipe");
    }
    let job = crate::watch::watch_job(client, &job_id, output.is_table()).await?;
    anyhow::ensure!(
        render::job_state(job.state) == "succeeded",
        "drill job {job_id} failed: {}",
        job.error
    );
    let request = pb::GetBackupRequest { backup_id: backup.id.clone(), local: false };
    client.get_backup(request).await.map_err(step("show the drilled backup"))
}

async fn restore(
    client: &Client,
    backup: &pb::Backup,
    paths: &Paths,
    output: OutputFormat,
) -> anyhow::Result<(pb::Job, f64)> {
    let started = Instant::now();
    let request = pb::SubmitRestoreRequest {
        backup_id: backup.id.clone(),
        target: format!("file://{}", paths.restored.display()),
        nodes_stopped: true, // The demo's "nodes" are files: nothing runs on them.
        ..Default::default()
    };
    let job_id = client.submit_restore(request).await.map_err(step("submit restore"))?.job_id;
    if output.is_table() {
        println!(
            "restore job {job_id} submitted: catalog, licence, nodes, compactor into {}",
            paths.restored.display()
        );
    }
    let job = crate::watch::watch_job(client, &job_id, output.is_table()).await?;
    anyhow::ensure!(
        render::job_state(job.state) == "succeeded",
        "restore job {job_id} failed: {}",
        job.error
    );
    Ok((job, started.elapsed().as_secs_f64()))
}

fn compare(source: &Path, restored: &Path, backup: &pb::Backup) -> anyhow::Result<Comparison> {
    let source_tree = bk_sample::tree::hash_tree(source)?;
    let restored_tree = bk_sample::tree::hash_tree(restored)?;
    let excluded =
        |key: &str| backup.exclusions.iter().any(|exclusion| key.starts_with(&exclusion.prefix));
    let expected: BTreeMap<&String, &(u64, String)> =
        source_tree.iter().filter(|(key, _)| !excluded(key)).collect();
    let mut differences = Vec::new();
    for (key, value) in &expected {
        match restored_tree.get(*key) {
            None => differences.push(format!("`{key}` is missing")),
            Some(restored) if restored != *value => differences.push(format!("`{key}` differs")),
            Some(_) => {}
        }
    }
    let unexpected = restored_tree.keys().filter(|key| !expected.contains_key(key));
    differences.extend(unexpected.map(|key| format!("`{key}` is not in the source")));
    Ok(Comparison {
        num_objects: restored_tree.len(),
        num_bytes: restored_tree.values().map(|(size, _)| size).sum(),
        num_excluded: source_tree.len() - expected.len(),
        differences,
    })
}

fn restore_document(job: &pb::Job, elapsed: f64, comparison: &Comparison) -> Value {
    json!({
        "job": render::job_json(job), "elapsed_seconds": elapsed,
        "comparison": {
            "num_objects": comparison.num_objects, "num_bytes": comparison.num_bytes,
            "num_excluded": comparison.num_excluded, "identical": comparison.differences.is_empty(),
            "differences": comparison.differences,
        },
    })
}

fn print_backup(backup: &pb::Backup, elapsed: f64, paths: &Paths) {
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
    println!("  sample cluster  {}", paths.cluster.display());
    println!("  repository      {}", paths.repository.display());
    println!(
        "  manifest        {}/{} (encrypted)",
        paths.repository.display(),
        backup.manifest_key
    );
    println!("  passphrase      {}", paths.demo.join("repository-passphrase").display());
    println!("  restored        {}", paths.restored.display());
    println!("  coordinator     {}", paths.demo.join("coordinator").display());
}

fn print_restore(elapsed: f64, comparison: &Comparison, paths: &Paths) {
    println!();
    println!(
        "restored in {elapsed:.2}s into {} (stages in reverse: catalog, licence, nodes, compactor)",
        paths.restored.display()
    );
    let verdict = if comparison.differences.is_empty() {
        "byte-identical to the source"
    } else {
        "DIFFERENT from the source"
    };
    println!(
        "compared with the source: {} objects, {}: {verdict} (the {} excluded object(s) aside)",
        comparison.num_objects,
        human_bytes(comparison.num_bytes),
        comparison.num_excluded
    );
    for difference in comparison.differences.iter().take(20) {
        println!("  {difference}");
    }
}
