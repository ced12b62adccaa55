//! The benchmark: bk's backup and restore of a generated InfluxDB 3 Enterprise cluster against
//! baselines measured in the same run on the same tree: `cp -r`, the vendor's sequential script
//! (its `cp -r` and `aws s3 sync` forms) and `rclone copy --transfers 16`, locally and into a
//! loopback Garage (S3) server. Prints medians and ratios and writes the same as JSON. Machines
//! here are noisy: read the ratios, not the seconds. `--scale` runs the coordinator scale test
//! instead (see `scale.rs`).
//!
//! `cargo run --release -p bk-tests --bin bench -- --size 2GiB --reps 3`

mod args;
mod deployment;
mod report;
mod scale;
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
    if args.scale {
        return scale::run(&args, &root);
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
                format!(
                    "[repositories.s3-{rep}]\noptions = {}\n",
                    s3.garage.options_toml(&secret_file)
                )
            })
            .collect(),
        None => String::new(),
    };
    let deployment = Deployment::start(&cluster, &params, &repository_tables)?;
    // The same, with the format checks off: what vouching for the source's files costs.
    let unchecked = Deployment::start_with_worker_env(
        &cluster,
        &params,
        "",
        &[("BK_SKIP_FORMAT_CHECKS", "1")],
    )?;

    let mut table = Table::new(generated.keys.len() as u64, generated.num_bytes, args.reps);
    for rep in 0..args.reps {
        println!("repetition {} of {}", rep + 1, args.reps);
        let dir = root.join(format!("rep-{rep}"));
        std::fs::create_dir_all(&dir)?;
        let local = format!("local-{rep}");
        deployment.add_repository(&local, &format!("file://{}", dir.join("repo").display()))?;
        let backup = ["backup", "--source", "src", "--repo", local.as_str(), "--full"];
        let (seconds, job) = deployment.timed_job(&backup)?;
        table.record("bk backup (local→local)", Baseline::Cp, seconds);
        let backup_id = job["backup_id"].as_str().context("the backup job has no backup id")?;
        let target = format!("file://{}", dir.join("restored").display());
        let restore =
            ["restore", "--backup", backup_id, "--target", target.as_str(), "--nodes-stopped"];
        table.record("bk restore (local→local)", Baseline::Cp, deployment.timed_job(&restore)?.0);
        let unchecked_repository = format!("unchecked-{rep}");
        let url = format!("file://{}", dir.join("unchecked-repo").display());
        unchecked.add_repository(&unchecked_repository, &url)?;
        let backup =
            ["backup", "--source", "src", "--repo", unchecked_repository.as_str(), "--full"];
        let seconds = unchecked.timed_job(&backup)?.0;
        table.record("bk backup, format checks off (local→local)", Baseline::Cp, seconds);
        let copy = |target: PathBuf| {
            tools::run(std::process::Command::new("cp").arg("-r").arg(&cluster).arg(target))
        };
        table.record("cp -r", Baseline::Cp, timed(|| copy(dir.join("cp")))?);
        let vendor = timed(|| vendor_cp(&cluster, &dir.join("vendor")))?;
        table.record("vendor script (cp -r, sequential)", Baseline::Cp, vendor);
        if let Some(rclone) = &rclone {
            let target = dir.join("rclone").display().to_string();
            let seconds = timed(|| rclone_copy(rclone, None, &cluster, &target))?;
            table.record("rclone copy --transfers 16 (local)", Baseline::Cp, seconds);
        }
        if let Some(s3) = &s3 {
            s3_rows(&deployment, s3, rclone.as_deref(), &cluster, rep, &mut table)?;
        }
        if args.dir.is_none() {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    let notes = missing_tools(rclone.is_none(), s3.as_ref());
    table.print_and_write(&args.out, &args.size, &notes)
}

fn s3_rows(
    deployment: &Deployment,
    s3: &S3,
    rclone: Option<&Path>,
    cluster: &Path,
    rep: usize,
    table: &mut Table,
) -> anyhow::Result<()> {
    let repository = format!("s3-{rep}");
    deployment.add_repository(&repository, &format!("s3://{BUCKET}/bk-{rep}"))?;
    let backup = ["backup", "--source", "src", "--repo", repository.as_str(), "--full"];
    table.record("bk backup (local→S3)", Baseline::RcloneS3, deployment.timed_job(&backup)?.0);
    if let Some(rclone) = rclone {
        let target = format!("s3:{BUCKET}/rclone-{rep}");
        let seconds = timed(|| rclone_copy(rclone, Some(&s3.garage), cluster, &target))?;
        table.record("rclone copy --transfers 16 (→S3)", Baseline::RcloneS3, seconds);
    }
    if let Some(aws) = &s3.aws {
        let prefix = format!("vendor-{rep}");
        let seconds = timed(|| vendor_aws_sync(aws, &s3.garage, cluster, &prefix))?;
        table.record("vendor script (aws s3 sync, sequential)", Baseline::RcloneS3, seconds);
    }
    if let Some(rclone) = rclone {
        for prefix in [format!("bk-{rep}"), format!("rclone-{rep}"), format!("vendor-{rep}")] {
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

fn missing_tools(no_rclone: bool, s3: Option<&S3>) -> Vec<String> {
    let mut notes = Vec::new();
    if no_rclone {
        notes.push("rclone not installed: `apt-get install rclone` adds its rows".to_string());
    }
    match s3 {
        None => notes
            .push("no S3 rows: install Garage (`cargo install garage@2.5.0 --locked`)".to_string()),
        Some(s3) if s3.aws.is_none() => notes
            .push("aws CLI not installed: `pip install awscli` adds the vendor S3 row".to_string()),
        Some(_) => {}
    }
    notes
}
