//! The benchmark: bk's backup and restore of a generated InfluxDB 3 Enterprise cluster against
//! baselines measured in the same run on the same tree (`cp -r`, the vendor's sequential
//! script in its `cp -r` form, `rclone copy` when installed). Prints medians and ratios and
//! writes the same as JSON. Machines here are noisy: read the ratios, not the seconds.
//!
//! `cargo run --release -p bk-tests --bin bench -- --size 1GiB --reps 3 --out bench.json`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::{json, Value};

struct Args {
    size: String,
    reps: usize,
    out: PathBuf,
    dir: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args =
        Args { size: "256MiB".into(), reps: 3, out: PathBuf::from("bench.json"), dir: None };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--size" => args.size = value()?,
            "--reps" => args.reps = value()?.parse().context("--reps takes a number")?,
            "--out" => args.out = value()?.into(),
            "--dir" => args.dir = Some(value()?.into()),
            "--help" | "-h" => {
                println!("bench [--size 256MiB] [--reps 3] [--out bench.json] [--dir DIR]");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`: see --help"),
        }
    }
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    Ok(args)
}

/// One measured tool: its name and the seconds of each repetition.
struct Series {
    name: &'static str,
    seconds: Vec<f64>,
}

impl Series {
    fn median(&self) -> f64 {
        let mut sorted = self.seconds.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let bkctl = build_bkctl()?;
    let keep;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            keep = tempfile::Builder::new().prefix("bk-bench-").tempdir()?;
            keep.path().to_path_buf()
        }
    };
    let rclone = which("rclone");
    let mut series = vec![
        Series { name: "bk backup (local→local)", seconds: Vec::new() },
        Series { name: "bk restore (local→local)", seconds: Vec::new() },
        Series { name: "cp -r", seconds: Vec::new() },
        Series { name: "vendor script (cp -r, sequential)", seconds: Vec::new() },
    ];
    if rclone.is_some() {
        series.push(Series { name: "rclone copy --transfers 16", seconds: Vec::new() });
    }
    let mut tree_bytes = 0;
    let mut tree_objects = 0;
    for rep in 0..args.reps {
        let dir = root.join(format!("rep-{rep}"));
        let demo = run_demo(&bkctl, &args.size, &dir)?;
        tree_bytes = demo["backup"]["num_bytes"].as_u64().unwrap_or(0);
        tree_objects = demo["backup"]["num_objects"].as_u64().unwrap_or(0);
        series[0].seconds.push(demo["elapsed_seconds"].as_f64().unwrap_or(f64::NAN));
        series[1].seconds.push(demo["restore"]["elapsed_seconds"].as_f64().unwrap_or(f64::NAN));
        let cluster = dir.join("cluster");
        series[2]
            .seconds
            .push(timed(|| run(Command::new("cp").arg("-r").arg(&cluster).arg(dir.join("cp"))))?);
        series[3].seconds.push(timed(|| vendor_script(&cluster, &dir.join("vendor")))?);
        if let Some(rclone) = &rclone {
            let target = dir.join("rclone");
            series[4].seconds.push(timed(|| {
                run(Command::new(rclone)
                    .args(["copy", "--transfers", "16", "--config", "/dev/null"])
                    .arg(&cluster)
                    .arg(&target))
            })?);
        }
        if args.dir.is_none() {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    report(&args, &series, tree_bytes, tree_objects, rclone.is_none())
}

fn report(
    args: &Args,
    series: &[Series],
    tree_bytes: u64,
    tree_objects: u64,
    no_rclone: bool,
) -> anyhow::Result<()> {
    let baseline = series[2].median();
    let mib = tree_bytes as f64 / f64::from(1 << 20);
    println!(
        "\n{} objects, {:.1} MiB, {} repetitions (medians; ratio = time / cp -r time)",
        tree_objects, mib, args.reps
    );
    println!("{:<36} {:>9} {:>10} {:>8}", "", "seconds", "MiB/s", "ratio");
    let mut rows = Vec::new();
    for entry in series {
        let median = entry.median();
        println!(
            "{:<36} {:>9.2} {:>10.1} {:>8.2}",
            entry.name,
            median,
            mib / median,
            median / baseline
        );
        rows.push(json!({
            "name": entry.name, "median_seconds": median, "seconds": entry.seconds,
            "mib_per_second": mib / median, "ratio_to_cp": median / baseline,
        }));
    }
    if no_rclone {
        println!("(rclone not installed: `apt-get install rclone` adds it to the table)");
    }
    let document = json!({
        "size": args.size, "reps": args.reps, "objects": tree_objects, "bytes": tree_bytes,
        "results": rows,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("written to {}", args.out.display());
    Ok(())
}

/// The vendor's recipe in its local form: one `cp -r` per prefix, in its order, one at a time.
fn vendor_script(cluster: &Path, target: &Path) -> anyhow::Result<()> {
    let mut prefixes = Vec::new();
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(cluster)?.flatten().map(|entry| entry.path()).collect();
    entries.sort();
    // Compactor first, then every node's snapshots, dbs, wal, then the cluster's catalog.
    for name in ["cs", "cd", "c"] {
        prefixes.extend(entries.iter().map(|dir| dir.join(name)));
    }
    for name in ["snapshots", "dbs", "wal"] {
        prefixes.extend(entries.iter().map(|dir| dir.join(name)));
    }
    for name in ["catalogs", "_catalog_checkpoint", "enterprise"] {
        prefixes.extend(entries.iter().map(|dir| dir.join(name)));
    }
    for prefix in prefixes.into_iter().filter(|prefix| prefix.exists()) {
        let relative = prefix.strip_prefix(cluster)?;
        let destination = target.join(relative);
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent)?;
        }
        run(Command::new("cp").arg("-r").arg(&prefix).arg(&destination))?;
    }
    Ok(())
}

fn run_demo(bkctl: &Path, size: &str, dir: &Path) -> anyhow::Result<Value> {
    let output = Command::new(bkctl)
        .args(["-o", "json", "demo", "--size", size, "--dir"])
        .arg(dir)
        .output()
        .context("cannot run bkctl demo")?;
    if !output.status.success() {
        bail!("bkctl demo failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    serde_json::from_slice(&output.stdout).context("bkctl demo printed no JSON")
}

/// Builds bkctl in this profile and returns its path (next to this executable).
fn build_bkctl() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the executable has a directory")?;
    let release = dir.ends_with("release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "-p", "bkctl", "--bin", "bkctl"]);
    if release {
        command.arg("--release");
    }
    run(&mut command)?;
    Ok(dir.join("bkctl"))
}

fn timed(step: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    step()?;
    Ok(start.elapsed().as_secs_f64())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|path| path.is_file())
    })
}
