//! `--questdb-snapshots`: how long a QuestDB backup holds the server in checkpoint mode with a
//! snapshot and without, and what the snapshot costs the backup, on real filesystems on loop
//! devices (a btrfs subvolume; XFS with reflinks). Each filesystem gets the same generated root
//! (`--size`, about 10,000 files at 2 GiB); per method a fresh repository and a full backup;
//! medians of `--reps` (the methods' repetitions alternate), each backup starting with a cold
//! page cache. The hold is the backup's own record (CREATE sent → RELEASE answered).
//! Needs root (loop devices).
//!
//! `cargo run --release -p bk-tests --bin bench -- --questdb-snapshots --size 2GiB --reps 3`

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use bk_tests::loopfs::{unavailable, Kind, LoopFilesystem};
use bk_tests::questdb_layout::generate_root;
use bk_tests::questdb_peer::{worker_section, PeerConfig, QuestDbPeer};
use bk_tests::sandbox::Sandbox;
use serde_json::json;

use crate::args::Args;

/// One row: a filesystem and a method.
struct Row {
    filesystem: &'static str,
    method: &'static str,
    backup_seconds: Vec<f64>,
    held_seconds: Vec<f64>,
    peak_rss: u64,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the comparison and writes the JSON report.
pub(crate) fn run(args: &Args, root: &Path) -> anyhow::Result<()> {
    if let Some(reason) = unavailable() {
        bail!("--questdb-snapshots needs loop devices: {reason}");
    }
    let total = bk_proto::support::parse_byte_size(&args.size).map_err(anyhow::Error::msg)?;
    // 100 tables × 19 partitions × 5 columns: about 10,700 files whatever the size.
    let column_bytes = (total / (100 * 19 * 5)).max(4096) as usize;
    let image_mib = (total >> 20) * 3 + 1024;
    let mut rows = Vec::new();
    for (kind, filesystem, snapshot) in
        [(Kind::Btrfs, "btrfs", "btrfs"), (Kind::Xfs, "xfs", "reflink")]
    {
        let mounted = LoopFilesystem::create(root, filesystem, kind, image_mib)
            .map_err(anyhow::Error::msg)?;
        let data = match kind {
            Kind::Btrfs => mounted.subvolume("questdb").map_err(anyhow::Error::msg)?,
            _ => mounted.mount.join("questdb"),
        };
        let files = generate_root(&data, 100, 19, column_bytes, 24)
            .context("generating the QuestDB root")?;
        println!("{filesystem}: {files} files, {} KiB per column file", column_bytes >> 10);
        let scratch = mounted.mount.join("snapshots");
        std::fs::create_dir_all(&scratch)?;
        // Repetitions alternate between the methods, so the machine's drift (this one's copy
        // time of the same data varies by a fifth between minutes) falls on both alike.
        let mut arms = Vec::new();
        for method in ["none", snapshot] {
            arms.push(Arm::start(&data, &scratch, filesystem, method)?);
        }
        for rep in 0..args.reps {
            for arm in &mut arms {
                arm.back_up(root, &scratch, rep)?;
            }
        }
        for mut arm in arms {
            arm.sandbox.kill_worker("q");
            rows.push(arm.row);
        }
    }
    println!(
        "\n{:<8} {:<8} {:>10} {:>12} {:>12} {:>10}",
        "fs", "method", "backup s", "held s", "vs none", "peak RSS"
    );
    let mut report = Vec::new();
    for row in &rows {
        let none = rows
            .iter()
            .find(|other| other.filesystem == row.filesystem && other.method == "none")
            .map_or(f64::NAN, |none| median(&none.backup_seconds));
        let (backup, held) = (median(&row.backup_seconds), median(&row.held_seconds));
        println!(
            "{:<8} {:<8} {:>10.2} {:>12.3} {:>11.2}× {:>7} MiB",
            row.filesystem,
            row.method,
            backup,
            held,
            backup / none,
            row.peak_rss >> 20
        );
        report.push(json!({
            "filesystem": row.filesystem, "method": row.method, "backup_seconds": row.backup_seconds,
            "checkpoint_held_seconds": row.held_seconds, "backup_vs_none": backup / none,
            "peak_worker_rss_bytes": row.peak_rss,
        }));
    }
    std::fs::write(
        &args.out,
        serde_json::to_vec_pretty(&json!({ "size": args.size, "rows": report }))?,
    )?;
    println!("written to {}", args.out.display());
    Ok(())
}

/// One method's coordinator, QuestDB peer and worker on a filesystem, and its measurements.
struct Arm {
    sandbox: Sandbox,
    /// Kept alive for the worker's CHECKPOINT commands.
    _peer: QuestDbPeer,
    row: Row,
}

impl Arm {
    fn start(
        data: &Path,
        scratch: &Path,
        filesystem: &'static str,
        method: &'static str,
    ) -> anyhow::Result<Arm> {
        let mut sandbox = Sandbox::start_cluster(1, &[("BK_LEASE_TIMEOUT", "30s")])?;
        let peer = QuestDbPeer::start(PeerConfig::new(data))?;
        let add =
            ["source", "add", "qdb", "--kind", "questdb", "--nodes", "q", "--pg", peer.address()];
        sandbox.bkctl_json(&add)?;
        let snapshot =
            format!("[snapshot]\nmethod = \"{method}\"\nscratch = \"{}\"\n", scratch.display());
        let section = format!("{snapshot}\n{}", worker_section("quest", ""));
        sandbox.start_worker_with("qdb", "q", data, &section)?;
        let row = Row {
            filesystem,
            method,
            backup_seconds: Vec::new(),
            held_seconds: Vec::new(),
            peak_rss: 0,
        };
        Ok(Arm { sandbox, _peer: peer, row })
    }

    /// One full backup into a fresh repository, from a cold page cache.
    fn back_up(&mut self, root: &Path, scratch: &Path, rep: usize) -> anyhow::Result<()> {
        let (filesystem, method, sandbox, row) =
            (self.row.filesystem, self.row.method, &self.sandbox, &mut self.row);
        let repository = root.join(format!("repository-{filesystem}-{method}-{rep}"));
        let name = format!("r{rep}");
        sandbox.bkctl_json(&["repo", "add", &name, &format!("file://{}", repository.display())])?;
        // A reflink clone is unlinked in the background after its job: not on this backup's
        // clock, and not overlapping it either.
        wait_for_empty_trash(scratch)?;
        // Cold: a snapshot's files are other inodes than the live ones, so their pages are never
        // cached when the copy starts; without this, "none" would read a hot cache and the
        // snapshot rows a cold one. Every row starts cold, as a root larger than memory would.
        drop_caches();
        sandbox.reset_worker_peak_rss();
        let start = Instant::now();
        let output = sandbox.bkctl(&[
            "-o", "json", "submit", "backup", "--source", "qdb", "--repo", &name, "--wait",
        ])?;
        row.backup_seconds.push(start.elapsed().as_secs_f64());
        if !output.status.success() {
            bail!(
                "backup failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let job: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let backup =
            sandbox.bkctl_json(&["show", job["backup_id"].as_str().unwrap_or_default()])?;
        row.held_seconds.push(backup["checkpoint_held_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0);
        row.peak_rss = row.peak_rss.max(sandbox.worker_peak_rss_bytes("q").unwrap_or(0));
        let phases: Vec<String> = backup["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|phase| {
                let took = phase["finished_at_ms"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(phase["started_at_ms"].as_u64().unwrap_or(0));
                format!("{} {:.2} s", phase["name"].as_str().unwrap_or("?"), took as f64 / 1000.0)
            })
            .collect();
        println!(
            "  {filesystem} {method} rep {rep}: backup {:.2} s, held {:.3} s ({})",
            row.backup_seconds[rep],
            row.held_seconds[rep],
            phases.join(", ")
        );
        let _ = std::fs::remove_dir_all(&repository);
        Ok(())
    }
}

fn drop_caches() {
    let _ = std::process::Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", b"3\n");
}

/// Waits until the worker has emptied `<scratch>/.bk-trash` (retired reflink clones).
fn wait_for_empty_trash(scratch: &Path) -> anyhow::Result<()> {
    let trash = scratch.join(".bk-trash");
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_dir(&trash).is_ok_and(|mut entries| entries.next().is_some()) {
        if Instant::now() > deadline {
            bail!("`{}` still holds clones after 2 minutes", trash.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}
