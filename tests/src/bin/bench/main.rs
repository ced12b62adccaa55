//! The benchmark: bk's backup and restore of a generated InfluxDB 3 Enterprise cluster against
//! baselines measured in the same run on the same tree: `cp -r`, the vendor's sequential script
//! (its `cp -r` and `aws s3 sync` forms) and `rclone copy --transfers 16`, locally and into a
//! loopback Garage (S3) server. Prints medians and ratios and writes the same as JSON. Machines
//! here are noisy: read the ratios, not the seconds. `--scale` runs the coordinator scale test
//! instead (see `scale.rs`); `--questdb-snapshots` the checkpoint hold with and without
//! filesystem snapshots (see `questdb_snapshots.rs`).
//!
//! `cargo run --release -p bk-tests --bin bench -- --size 2GiB --reps 3`

mod args;
mod deployment;
mod index_scale;
mod job_history;
mod objects;
mod questdb_snapshots;
mod report;
mod scale;
mod simulated;
mod tools;

use std::path::{Path, PathBuf};

use anyhow::Context;
use bk_tests::garage::{Garage, BUCKET, SECRET_ACCESS_KEY};
use bk_tests::layout::{generate, LayoutParams};

use crate::args::{parse_args, Args};
use crate::deployment::{build_binaries, Deployment};
use crate::report::{Baseline, Table};
use crate::tools::{rclone_copy, timed, vendor_aws_sync, vendor_cp, which};

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    build_binaries()?;
    let keep;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            keep = tempfile::Builder::new().prefix("bk-bench-").tempdir()?;
            keep.path().to_path_buf()
        }
    };
    if let (true, Some(workers)) = (args.scale, args.simulate) {
        return simulated::run(&args, &root, workers);
    }
    if args.scale {
        return scale::run(&args, &root);
    }
    if let Some(blobs) = args.index_blobs {
        return index_scale::run(&args, &root, blobs);
    }
    if args.questdb_snapshots {
        return questdb_snapshots::run(&args, &root);
    }
    if let Some(objects) = args.objects {
        return objects::run(&args, &root, objects);
    }
    throughput(&args, &root)
}

/// The S3 side of a run: the server and the tools that talk to it.
struct S3 {
    garage: Garage,
    aws: Option<PathBuf>,
}

fn throughput(args: &Args, root: &Path) -> anyhow::Result<()> {
    let total = bk_proto::support::parse_byte_size(&args.size).map_err(anyhow::Error::msg)?;
    let params = LayoutParams::benchmark_mix(total);
    let cluster = root.join("cluster");
    println!("generating a {} cluster in {}", args.size, cluster.display());
    let generated = generate(&cluster, &params).context("cannot generate the cluster")?;
    let rclone = which("rclone");
    let s3 = start_s3(args, root);
    let secret_file = root.join("s3-secret");
    std::fs::write(&secret_file, SECRET_ACCESS_KEY)?;
    let repository_tables: String = match &s3 {
        Some(s3) => (0..args.reps)
            .map(|rep| {
                let options = s3.garage.options_toml(&secret_file);
                // The same server with SigV4 signed payloads instead of a CRC64-NVME checksum
                // header: what the default request integrity saves, measured alike.
                let signed = options.replacen(" }", ", aws_unsigned_payload = \"false\" }", 1);
                format!(
                    "[repositories.s3-{rep}]\noptions = {options}\n\
                     [repositories.s3-signed-{rep}]\noptions = {signed}\n"
                )
            })
            .collect(),
        None => String::new(),
    };
    // Drills restore into scratch space of their own and check it offline (no database here).
    let drill = format!("[drill]\nscratch_dir = \"{}\"\n", root.join("drill-scratch").display());
    let deployment = Deployment::start(&cluster, &params, &format!("{repository_tables}{drill}"))?;
    // The same cluster with one feature switched off each: what it costs, measured alike.
    // A variant with a restore row is restored too: page recycling matters most where bk writes
    // the most, a restore.
    // The cheap key derivation shows what deriving each new repository's key costs a first
    // backup: every repetition backs up into a new repository, whose key each worker derives
    // once (a worker that has it open does not derive it again).
    let cheap_kdf: &[(&str, &str)] =
        &[("BK_ARGON2_MEMORY_KIB", "64"), ("BK_ARGON2_ITERATIONS", "1")];
    let variants = [
        (
            "bk backup, encryption off (local→local)",
            &[("BK_BENCH_UNENCRYPTED_BLOBS", "1")][..],
            None,
        ),
        ("bk backup, format checks off (local→local)", &[("BK_SKIP_FORMAT_CHECKS", "1")], None),
        (
            "bk backup, page recycling off (local→local)",
            &[("BK_BENCH_NO_PAGE_RECYCLING", "1")],
            Some("bk restore, page recycling off (local→local)"),
        ),
        ("bk backup, Argon2id 64 KiB × 1 (local→local)", cheap_kdf, None),
    ]
    .into_iter()
    .map(|(name, worker_env, restore_row)| {
        let deployment = Deployment::start_with_worker_env(&cluster, &params, "", worker_env)?;
        Ok(Variant { name, restore_row, deployment })
    })
    .collect::<anyhow::Result<Vec<_>>>()?;

    let mut table = Table::new(generated.keys.len() as u64, generated.num_bytes, args.reps);
    for rep in 0..args.reps {
        println!("repetition {} of {}", rep + 1, args.reps);
        let dir = root.join(format!("rep-{rep}"));
        std::fs::create_dir_all(&dir)?;
        local_rows(&deployment, &variants, &cluster, &dir, rep, rclone.as_deref(), &mut table)?;
        if let Some(s3) = &s3 {
            s3_rows(&deployment, s3, rclone.as_deref(), &cluster, &dir, rep, &mut table)?;
        }
        // Each repetition writes ~9 copies of the cluster: gone before the next one starts.
        std::fs::remove_dir_all(&dir)?;
    }
    let notes = missing_tools(rclone.is_none(), args.no_s3, s3.as_ref());
    table.print_and_write(&args.out, &args.size, &notes)
}

/// The same cluster with one feature switched off: its backup row, and its restore row when
/// its backup is restored too.
struct Variant {
    name: &'static str,
    restore_row: Option<&'static str>,
    deployment: Deployment,
}

/// The local rows of one repetition: bk backup (full, unchanged incremental, and each variant),
/// restore, and the baselines. Every timed step starts from a `sync`, and the baselines end
/// with one: bk syncs what it writes before reporting, so both sides pay for durability.
fn local_rows(
    deployment: &Deployment,
    variants: &[Variant],
    cluster: &Path,
    dir: &Path,
    rep: usize,
    rclone: Option<&Path>,
    table: &mut Table,
) -> anyhow::Result<()> {
    let local = format!("local-{rep}");
    deployment.add_repository(&local, &format!("file://{}", dir.join("repo").display()), &[])?;
    let backup = ["backup", "--source", "src", "--repo", local.as_str(), "--full"];
    tools::settle(cluster)?;
    let run = deployment.measured_job(&backup)?;
    table.record_job("bk backup (local→local)", Baseline::Cp, &run);
    table.record_backup_facts(deployment, &run.job, "local")?;
    let unchanged = ["backup", "--source", "src", "--repo", local.as_str()];
    tools::settle(cluster)?;
    let (seconds, job) = deployment.timed_job(&unchanged)?;
    table.record("bk backup, unchanged (incremental)", Baseline::BkFull, seconds);
    table.record_backup_facts(deployment, &job, "unchanged")?;
    let compression_off = format!("plain-{rep}");
    let url = format!("file://{}", dir.join("plain-repo").display());
    deployment.add_repository(&compression_off, &url, &["--compression-level", "0"])?;
    let backup = ["backup", "--source", "src", "--repo", compression_off.as_str(), "--full"];
    tools::settle(cluster)?;
    table.record(
        "bk backup, compression off (local→local)",
        Baseline::BkFull,
        deployment.timed_job(&backup)?.0,
    );
    for (index, Variant { name, restore_row, deployment: variant }) in variants.iter().enumerate() {
        let repository = format!("variant-{index}-{rep}");
        let url = format!("file://{}", dir.join(&repository).display());
        variant.add_repository(&repository, &url, &[])?;
        let backup = ["backup", "--source", "src", "--repo", repository.as_str(), "--full"];
        tools::settle(cluster)?;
        let (seconds, job) = variant.timed_job(&backup)?;
        table.record(name, Baseline::BkFull, seconds);
        if let Some(restore_row) = restore_row {
            let backup_id = job["backup_id"].as_str().context("the backup job has no backup id")?;
            let target = format!("file://{}", dir.join(format!("{repository}-restored")).display());
            let restore =
                ["restore", "--backup", backup_id, "--target", target.as_str(), "--nodes-stopped"];
            tools::settle(&dir.join(&repository))?;
            table.record(restore_row, Baseline::Cp, variant.timed_job(&restore)?.0);
        }
    }
    let backup_id = job["backup_id"].as_str().context("the backup job has no backup id")?;
    let target = format!("file://{}", dir.join("restored").display());
    let restore =
        ["restore", "--backup", backup_id, "--target", target.as_str(), "--nodes-stopped"];
    tools::settle(&dir.join("repo"))?;
    table.record_job("bk restore (local→local)", Baseline::Cp, &deployment.measured_job(&restore)?);
    tools::settle(&dir.join("repo"))?;
    let drill = deployment.measured_job(&["drill", "--backup", backup_id])?;
    table.record_job("bk drill, offline checks (local)", Baseline::Cp, &drill);
    let drilled = deployment.show(backup_id)?;
    let last =
        &drilled["drills"][drilled["drills"].as_array().map_or(0, Vec::len).saturating_sub(1)];
    let facts = serde_json::json!({
        "passed": last["passed"], "scratch_bytes": last["scratch_bytes"],
        "restore_ms": last["restore_ms"], "checks": last["checks"],
    });
    table.record_fact("drill", facts);
    let copy = |target: PathBuf| {
        tools::run(std::process::Command::new("cp").arg("-r").arg(cluster).arg(target))
    };
    let cp = timed_durable(cluster, || copy(dir.join("cp")))?;
    table.record("cp -r + sync", Baseline::Cp, cp);
    let vendor = timed_durable(cluster, || vendor_cp(cluster, &dir.join("vendor")))?;
    table.record("vendor script (cp -r, sequential)", Baseline::Cp, vendor);
    if let Some(rclone) = rclone {
        let target = dir.join("rclone").display().to_string();
        let seconds = timed_durable(cluster, || rclone_copy(rclone, None, cluster, &target))?;
        table.record("rclone copy --transfers 16 (local)", Baseline::Cp, seconds);
    }
    Ok(())
}

/// `step`'s seconds, from a settled start (see [`tools::settle`], `source` is what it reads)
/// to its writes on disk (`sync` after it).
fn timed_durable(source: &Path, step: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    tools::settle(source)?;
    timed(|| {
        step()?;
        tools::sync()
    })
}

fn s3_rows(
    deployment: &Deployment,
    s3: &S3,
    rclone: Option<&Path>,
    cluster: &Path,
    dir: &Path,
    rep: usize,
    table: &mut Table,
) -> anyhow::Result<()> {
    let repository = format!("s3-{rep}");
    deployment.add_repository(&repository, &format!("s3://{BUCKET}/bk-{rep}"), &[])?;
    let backup = ["backup", "--source", "src", "--repo", repository.as_str(), "--full"];
    tools::settle(cluster)?;
    let run = deployment.measured_job(&backup)?;
    table.record_job("bk backup (local→S3, Garage)", Baseline::RcloneS3, &run);
    table.record_backup_facts(deployment, &run.job, "S3")?;
    let job = run.job;
    let signed = format!("s3-signed-{rep}");
    deployment.add_repository(&signed, &format!("s3://{BUCKET}/bk-signed-{rep}"), &[])?;
    tools::settle(cluster)?;
    let signed_backup = ["backup", "--source", "src", "--repo", signed.as_str(), "--full"];
    let seconds = deployment.measured_job(&signed_backup)?.seconds;
    table.record("bk backup, SigV4 signed payloads (local→S3)", Baseline::RcloneS3, seconds);
    if let Some(rclone) = rclone {
        let target = format!("s3:{BUCKET}/rclone-{rep}");
        tools::settle(cluster)?;
        let seconds = timed(|| rclone_copy(rclone, Some(&s3.garage), cluster, &target))?;
        table.record("rclone copy --transfers 16 (→S3)", Baseline::RcloneS3, seconds);
    }
    if let Some(aws) = &s3.aws {
        let prefix = format!("vendor-{rep}");
        tools::settle(cluster)?;
        let seconds = timed(|| vendor_aws_sync(aws, &s3.garage, cluster, &prefix))?;
        table.record("vendor script (aws s3 sync, sequential)", Baseline::RcloneS3, seconds);
    }
    let backup_id = job["backup_id"].as_str().context("the backup job has no backup id")?;
    let target = format!("file://{}", dir.join("restored-from-s3").display());
    let restore =
        ["restore", "--backup", backup_id, "--target", target.as_str(), "--nodes-stopped"];
    tools::sync()?;
    let run = deployment.measured_job(&restore)?;
    table.record_job("bk restore (S3→local)", Baseline::RcloneFromS3, &run);
    if let Some(rclone) = rclone {
        let source = format!("s3:{BUCKET}/rclone-{rep}");
        let target = dir.join("rclone-from-s3");
        let seconds = timed_durable(cluster, || {
            tools::rclone_copy_from(rclone, &s3.garage, &source, &target)
        })?;
        table.record("rclone copy --transfers 16 (S3→local)", Baseline::RcloneFromS3, seconds);
        for prefix in ["bk", "bk-signed", "rclone", "vendor"].map(|name| format!("{name}-{rep}")) {
            tools::purge_s3_prefix(rclone, &s3.garage, &prefix)?;
        }
    }
    Ok(())
}

fn start_s3(args: &Args, root: &Path) -> Option<S3> {
    if args.no_s3 {
        return None;
    }
    match Garage::start(&root.join("garage")) {
        Ok(garage) => Some(S3 { garage, aws: which("aws") }),
        Err(error) => {
            println!("S3 rows skipped: {error:#}");
            None
        }
    }
}

fn missing_tools(no_rclone: bool, no_s3: bool, s3: Option<&S3>) -> Vec<String> {
    let mut notes = Vec::new();
    if no_rclone {
        notes.push("rclone not installed: `apt-get install rclone` adds its rows".to_string());
    }
    match s3 {
        None if no_s3 => notes.push("no S3 rows: --no-s3".to_string()),
        None => notes
            .push("no S3 rows: install Garage (`cargo install garage@2.5.0 --locked`)".to_string()),
        Some(s3) if s3.aws.is_none() => notes
            .push("aws CLI not installed: `pip install awscli` adds the vendor S3 row".to_string()),
        Some(_) => {}
    }
    notes
}
