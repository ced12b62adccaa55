//! The baselines: `cp -r`, the vendor's sequential script (its `cp -r` and `aws s3 sync`
//! forms), `rclone copy`, each run on the same tree as bk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use bk_tests::garage::{Garage, ACCESS_KEY_ID, BUCKET, REGION, SECRET_ACCESS_KEY};

/// The vendor's prefixes in its order: compactor (`cs`, `cd`, `c`), every node's `snapshots`,
/// `dbs`, `wal`, then the cluster's `catalogs`, `_catalog_checkpoint`, `enterprise`. Only those
/// that exist; relative to `cluster`.
pub(crate) fn vendor_prefixes(cluster: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(cluster)?.flatten().map(|entry| entry.path()).collect();
    entries.sort();
    let mut prefixes = Vec::new();
    for group in [
        ["cs", "cd", "c"],
        ["snapshots", "dbs", "wal"],
        ["catalogs", "_catalog_checkpoint", "enterprise"],
    ] {
        for name in group {
            prefixes.extend(entries.iter().map(|dir| dir.join(name)));
        }
    }
    prefixes
        .into_iter()
        .filter(|prefix| prefix.exists())
        .map(|prefix| Ok(prefix.strip_prefix(cluster)?.to_path_buf()))
        .collect()
}

/// The vendor's recipe with `cp -r`, one prefix at a time.
pub(crate) fn vendor_cp(cluster: &Path, target: &Path) -> anyhow::Result<()> {
    for relative in vendor_prefixes(cluster)? {
        let destination = target.join(&relative);
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent)?;
        }
        run(Command::new("cp").arg("-r").arg(cluster.join(&relative)).arg(&destination))?;
    }
    Ok(())
}

/// The vendor's recipe with `aws s3 sync`, one prefix at a time, into `s3://BUCKET/<prefix>/`.
pub(crate) fn vendor_aws_sync(
    aws: &Path,
    garage: &Garage,
    cluster: &Path,
    prefix: &str,
) -> anyhow::Result<()> {
    for relative in vendor_prefixes(cluster)? {
        let source = cluster.join(&relative);
        let target = format!("s3://{BUCKET}/{prefix}/{}", relative.display());
        let mut command = aws_command(aws, garage);
        if source.is_dir() {
            command.args(["s3", "sync"]);
        } else {
            command.args(["s3", "cp"]);
        }
        run(command.arg(&source).arg(&target).arg("--only-show-errors"))?;
    }
    Ok(())
}

fn aws_command(aws: &Path, garage: &Garage) -> Command {
    let mut command = Command::new(aws);
    command
        .args(["--endpoint-url", garage.endpoint()])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_DEFAULT_REGION", REGION)
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE");
    command
}

/// `rclone copy --transfers 16 SOURCE TARGET`, where an `s3:` target is the Garage bucket.
pub(crate) fn rclone_copy(
    rclone: &Path,
    garage: Option<&Garage>,
    source: &Path,
    target: &str,
) -> anyhow::Result<()> {
    let mut command = rclone_command(rclone, garage);
    run(command.args(["copy", "--transfers", "16"]).arg(source).arg(target))
}

/// `rclone copy --transfers 16` from an `s3:` source in the Garage bucket to a local `target`.
pub(crate) fn rclone_copy_from(
    rclone: &Path,
    garage: &Garage,
    source: &str,
    target: &Path,
) -> anyhow::Result<()> {
    let mut command = rclone_command(rclone, Some(garage));
    run(command.args(["copy", "--transfers", "16", source]).arg(target))
}

/// `sync`: everything written so far is on disk.
pub(crate) fn sync() -> anyhow::Result<()> {
    run(&mut Command::new("sync"))
}

/// What every timed step starts from: nothing dirty (`sync`), the whole source tree read
/// into the page cache, so no row pays for reading the tree from disk after the previous
/// repetition's deletions pushed it out (the first row of a repetition did, 1.5× slower), and
/// a quiet machine: the previous repetition's deletions (ext4 frees 18 GiB in the background)
/// and Garage's collection of the purged S3 data took a core for seconds after they returned,
/// and the next rows ran beside them (an unchanged incremental measured 0.13, 0.61 and 0.25 s
/// in one run's three repetitions).
pub(crate) fn settle(tree: &Path) -> anyhow::Result<()> {
    sync()?;
    read_tree(tree)?;
    wait_until_quiet()
}

/// Share of all CPUs busy (not idle, not waiting for I/O) below which the machine is quiet.
const QUIET_BUSY: f64 = 0.10;
/// How long the machine is given to become quiet before a row runs anyway (and says so).
const QUIET_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until the CPUs were less than [`QUIET_BUSY`] busy over a quarter of a second, as
/// `/proc/stat` counts it (without it, e.g. off Linux, at once).
fn wait_until_quiet() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let Some(mut before) = cpu_times() else { return Ok(()) };
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let Some(now) = cpu_times() else { return Ok(()) };
        let (busy, total) = (now.0 - before.0, now.1 - before.1);
        let share = if total == 0 { 0.0 } else { busy as f64 / total as f64 };
        if share < QUIET_BUSY {
            return Ok(());
        }
        if started.elapsed() > QUIET_WAIT {
            println!(
                "  (the machine stayed {:.0} % busy for {QUIET_WAIT:?}: measuring anyway)",
                share * 100.0
            );
            return Ok(());
        }
        before = now;
    }
}

/// (busy, total) jiffies of all CPUs since boot.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

fn read_tree(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            read_tree(&entry.path())?;
        } else {
            std::io::copy(&mut std::fs::File::open(entry.path())?, &mut std::io::sink())?;
        }
    }
    Ok(())
}

/// Deletes everything under `prefix` in the Garage bucket, so repetitions do not fill the disk.
pub(crate) fn purge_s3_prefix(rclone: &Path, garage: &Garage, prefix: &str) -> anyhow::Result<()> {
    let mut command = rclone_command(rclone, Some(garage));
    run(command.args(["purge", &format!("s3:{BUCKET}/{prefix}")]))
}

fn rclone_command(rclone: &Path, garage: Option<&Garage>) -> Command {
    let mut command = Command::new(rclone);
    // An empty config: rclone's own config file (if any) must not change what is measured.
    command.args(["--config", "/dev/null"]).env_remove("AWS_CA_BUNDLE");
    if let Some(garage) = garage {
        command
            .env("RCLONE_CONFIG_S3_TYPE", "s3")
            .env("RCLONE_CONFIG_S3_PROVIDER", "Other")
            .env("RCLONE_CONFIG_S3_ENDPOINT", garage.endpoint())
            .env("RCLONE_CONFIG_S3_REGION", REGION)
            .env("RCLONE_CONFIG_S3_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("RCLONE_CONFIG_S3_FORCE_PATH_STYLE", "true");
    }
    command
}

/// Seconds `step` took.
pub(crate) fn timed(step: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    step()?;
    Ok(start.elapsed().as_secs_f64())
}

/// Runs `command`, requiring success. Errors name the program and arguments, never the
/// environment (which carries the S3 secret).
pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = bk_tests::sandbox::command_line(command);
    let output = command.output().with_context(|| format!("cannot run `{shown}`"))?;
    if !output.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The first `name` on `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|path| path.is_file())
    })
}
