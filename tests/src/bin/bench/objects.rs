//! `bench --objects N`: bk against restic on a tree of many small objects, the shape a large
//! InfluxDB 3 cluster has (a node keeping weeks of 10-minute parquet chunks of many tables),
//! on the same tree, in the same run: full backup, unchanged and changed incrementals, restore,
//! the bytes a change adds to each repository, and peak memory (bk's largest worker and all
//! four together, restic's process). The unchanged incremental is also compared with a bare
//! stat walk of the tree (`find -printf '%s %T@\n'`), and measured again with the workers'
//! listing memos deleted (every directory read). Every step ends with `sync`.
//!
//! The change between the incrementals is what a live cluster writes between two backups:
//! +1 % objects (a new 10-minute slot for every table of every node) and one 64 MiB parquet
//! file; it is removed again after each repetition.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use bk_tests::layout::{add_small_parquet, generate, LayoutParams, SmallParquet};

use crate::args::Args;
use crate::deployment::Deployment;
use crate::report::{Baseline, Table};
use crate::tools::{self, timed, which};

/// Bytes of each small file.
const SMALL_FILE_BYTES: u64 = 4096;
/// Tables per node.
const TABLES_PER_NODE: u64 = 250;
/// restic's passphrase (a bench repository; nothing secret).
const RESTIC_PASSWORD: &str = "bench-restic-passphrase";

/// Runs the comparison.
///
/// # Errors
/// When restic is missing, a tool fails, or bk's job fails.
pub(crate) fn run(args: &Args, root: &Path, objects: u64) -> anyhow::Result<()> {
    let restic = which("restic").context(
        "restic is not installed: `apt-get install restic` (Debian's 0.14, repository v2: compressed and encrypted)",
    )?;
    let base_bytes = bk_proto::support::parse_byte_size(&args.size).map_err(anyhow::Error::msg)?;
    let params = LayoutParams::benchmark_mix(base_bytes);
    let cluster = root.join("cluster");
    println!("generating a {} cluster with {objects} objects in {}", args.size, cluster.display());
    let base = generate(&cluster, &params).context("cannot generate the cluster")?;
    let nodes: Vec<String> =
        params.data_nodes.iter().chain(&params.compactor_node).cloned().collect();
    let per_node = objects.saturating_sub(base.keys.len() as u64) / nodes.len() as u64;
    let small = SmallParquet {
        nodes: nodes.clone(),
        per_node,
        tables: TABLES_PER_NODE,
        size: SMALL_FILE_BYTES,
        first_slot: 0,
        seed: 7,
    };
    let added = add_small_parquet(&cluster, &small).context("cannot add the small files")?;
    let num_objects = (base.keys.len() + added.keys.len()) as u64;
    let num_bytes = base.num_bytes + added.num_bytes;
    println!("{num_objects} objects, {} MiB", num_bytes >> 20);
    let deployment = Deployment::start(&cluster, &params, "")?;
    let mut table = Table::new(num_objects, num_bytes, args.reps);
    for rep in 0..args.reps {
        println!("repetition {} of {}", rep + 1, args.reps);
        let dir = root.join(format!("rep-{rep}"));
        let change = Change::new(&small, &nodes, num_objects, rep);
        // A run that stopped part-way (`--dir` is reused) left its repositories and its
        // change behind: a full backup into them would deduplicate against the last run.
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        change.undo(&cluster)?;
        std::fs::create_dir_all(&dir)?;
        repetition(&deployment, &restic, &cluster, &dir, rep, &change, &mut table)?;
        change.undo(&cluster)?;
        std::fs::remove_dir_all(&dir)?;
    }
    table.print_and_write(&args.out, &format!("{} + {objects} objects", args.size), &[])
}

/// What one repetition changes between the incrementals: new small files in the next slots,
/// and one large parquet file.
struct Change {
    small: SmallParquet,
    large: String,
}

impl Change {
    fn new(small: &SmallParquet, nodes: &[String], num_objects: u64, rep: usize) -> Self {
        let per_node = (num_objects / 100).div_ceil(nodes.len() as u64);
        let small = SmallParquet {
            per_node,
            first_slot: small.next_slot() + 1000 * rep as u64,
            seed: 100 + rep as u64,
            ..small.clone()
        };
        Self { small, large: format!("{}/dbs/7/0/2026-12-31/23-50/9999999999.parquet", nodes[0]) }
    }

    fn apply(&self, cluster: &Path) -> anyhow::Result<()> {
        add_small_parquet(cluster, &self.small)?;
        let mut body = vec![0u8; 64 << 20];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut body);
        body[..4].copy_from_slice(b"PAR1");
        let end = body.len();
        body[end - 4..].copy_from_slice(b"PAR1");
        let path = cluster.join(&self.large);
        std::fs::create_dir_all(path.parent().context("a parent")?)?;
        std::fs::write(path, body)?;
        Ok(())
    }

    fn undo(&self, cluster: &Path) -> anyhow::Result<()> {
        let removed = cluster.join(&self.large);
        if removed.exists() {
            std::fs::remove_file(removed)?;
        }
        // The slots the change added are directories of their own: remove them whole.
        for node in &self.small.nodes {
            for table in 0..self.small.tables {
                let dir = cluster.join(format!("{node}/dbs/7/{table}"));
                let Ok(days) = std::fs::read_dir(&dir) else { continue };
                for day in days.flatten() {
                    let Ok(slots) = std::fs::read_dir(day.path()) else { continue };
                    for slot in slots.flatten() {
                        let ours = std::fs::read_dir(slot.path())?.flatten().any(|file| {
                            file.file_name()
                                .to_str()
                                .and_then(|name| name.strip_suffix(".parquet"))
                                .and_then(|number| number.parse::<u64>().ok())
                                .is_some_and(|number| number >= self.small.first_slot)
                        });
                        if ours {
                            std::fs::remove_dir_all(slot.path())?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn repetition(
    deployment: &Deployment,
    restic: &Path,
    cluster: &Path,
    dir: &Path,
    rep: usize,
    change: &Change,
    table: &mut Table,
) -> anyhow::Result<()> {
    let repository = format!("local-{rep}");
    let bk_repo = dir.join("bk-repo");
    deployment.add_repository(&repository, &format!("file://{}", bk_repo.display()), &[])?;
    let restic_repo = dir.join("restic-repo");
    let restic = Restic {
        binary: restic.to_path_buf(),
        repository: restic_repo.clone(),
        dir: dir.to_path_buf(),
    };
    restic.init()?;

    let full = ["backup", "--source", "src", "--repo", repository.as_str(), "--full"];
    tools::settle(cluster)?;
    let run = deployment.measured_job(&full)?;
    let full_seconds = run.seconds;
    table.record_job("bk backup (full)", Baseline::ResticFull, &run);
    table.note_peak_rss("bk workers together, full backup", run.sum_worker_rss);
    tools::settle(cluster)?;
    let (seconds, rss) = restic.timed(&["backup", "--quiet"], cluster)?;
    table.record("restic backup (full)", Baseline::ResticFull, seconds);
    table.note_peak_rss("restic peak RSS, full backup", rss);

    tools::settle(cluster)?;
    let walk = timed(|| {
        tools::run(
            Command::new("find")
                .arg(cluster)
                .args(["-printf", "%s %T@\\n"])
                .stdout(std::process::Stdio::null()),
        )
    })?;
    table.record("find -printf (stat walk)", Baseline::StatWalk, walk);

    let incremental = ["backup", "--source", "src", "--repo", repository.as_str()];
    tools::settle(cluster)?;
    let run = deployment.measured_job(&incremental)?;
    table.record_job("bk backup, unchanged", Baseline::ResticUnchanged, &run);
    table.record_ratio("bk backup, unchanged / stat walk", run.seconds / walk);
    // The same without the workers' listing memos: every directory read again.
    deployment.forget_listing_memos()?;
    tools::settle(cluster)?;
    let run = deployment.measured_job(&incremental)?;
    table.record_job("bk backup, unchanged, listing memos deleted", Baseline::StatWalk, &run);
    tools::settle(cluster)?;
    let (seconds, rss) = restic.timed(&["backup", "--quiet"], cluster)?;
    table.record("restic backup, unchanged", Baseline::ResticUnchanged, seconds);
    table.note_peak_rss("restic peak RSS, unchanged", rss);

    change.apply(cluster)?;
    let (bk_before, restic_before) = (tree_bytes(&bk_repo)?, tree_bytes(&restic_repo)?);
    tools::settle(cluster)?;
    let run = deployment.measured_job(&incremental)?;
    table.record_job("bk backup, changed (+1 % objects, +64 MiB)", Baseline::ResticChanged, &run);
    table.record_ratio("bk backup, changed / bk full backup", run.seconds / full_seconds);
    let changed_backup = run.job["backup_id"].as_str().context("no backup id")?.to_string();
    let shown = deployment.show(&changed_backup)?;
    tools::settle(cluster)?;
    let (seconds, rss) = restic.timed(&["backup", "--quiet"], cluster)?;
    table.record("restic backup, changed", Baseline::ResticChanged, seconds);
    table.note_peak_rss("restic peak RSS, changed", rss);
    let facts = serde_json::json!({
        "bk_repository_bytes_added": tree_bytes(&bk_repo)? - bk_before,
        "bk_list_bytes_written": shown["list_bytes_written"],
        "bk_bytes_stored": shown["bytes_stored"],
        "restic_repository_bytes_added": tree_bytes(&restic_repo)? - restic_before,
        "objects_added": change.small.per_node * change.small.nodes.len() as u64 + 1,
    });
    table.record_fact("changed incremental", facts);

    let target = dir.join("bk-restored");
    let target_url = format!("file://{}", target.display());
    let restore = [
        "restore",
        "--backup",
        changed_backup.as_str(),
        "--target",
        target_url.as_str(),
        "--nodes-stopped",
    ];
    tools::settle(&bk_repo)?;
    let run = deployment.measured_job(&restore)?;
    table.record_job("bk restore", Baseline::ResticRestore, &run);
    std::fs::remove_dir_all(&target)?;
    let restored = dir.join("restic-restored");
    tools::settle(&restic_repo)?;
    let restored_arg = restored.display().to_string();
    let (seconds, rss) =
        restic.timed(&["restore", "latest", "--target", &restored_arg], cluster)?;
    table.record("restic restore", Baseline::ResticRestore, seconds);
    table.note_peak_rss("restic peak RSS, restore", rss);
    std::fs::remove_dir_all(&restored)?;
    Ok(())
}

/// restic on one repository.
struct Restic {
    binary: PathBuf,
    repository: PathBuf,
    /// Where its cache goes (one per repetition, as a fresh machine would have).
    dir: PathBuf,
}

impl Restic {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--repo")
            .arg(&self.repository)
            .arg("--cache-dir")
            .arg(self.dir.join("restic-cache"))
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD);
        command
    }

    fn init(&self) -> anyhow::Result<()> {
        tools::run(self.command().args(["init", "--quiet"]))
    }

    /// `restic ARGS [PATH]` then `sync`: seconds, and restic's peak RSS (GNU time's `%M`).
    fn timed(&self, args: &[&str], path: &Path) -> anyhow::Result<(f64, u64)> {
        let rss_file = self.dir.join("restic-rss");
        let mut command = Command::new("/usr/bin/time");
        command.arg("-f").arg("%M").arg("-o").arg(&rss_file);
        let inner = self.command();
        command.arg(inner.get_program()).args(inner.get_args());
        command.env("RESTIC_PASSWORD", RESTIC_PASSWORD).args(args);
        if args.first() == Some(&"backup") {
            command.arg(path);
        }
        if !Path::new("/usr/bin/time").exists() {
            bail!("GNU time is not installed (`apt-get install time`): it measures restic's peak memory");
        }
        let seconds = timed(|| {
            tools::run(&mut command)?;
            tools::sync()
        })?;
        let kib: u64 =
            std::fs::read_to_string(&rss_file)?.trim().parse().context("GNU time's %M")?;
        Ok((seconds, kib << 10))
    }
}

/// Bytes of the files under `dir`.
fn tree_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    if !dir.exists() {
        return Ok(0);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        bytes += if entry.file_type()?.is_dir() {
            tree_bytes(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(bytes)
}
