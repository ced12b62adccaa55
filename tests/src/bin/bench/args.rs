//! The benchmark's command line.

use std::path::PathBuf;

use anyhow::{bail, Context};

/// What to run.
pub(crate) struct Args {
    /// Size of the generated cluster (`256MiB`, `2GiB`).
    pub(crate) size: String,
    /// Repetitions per tool; medians are reported.
    pub(crate) reps: usize,
    /// Where the JSON report goes.
    pub(crate) out: PathBuf,
    /// Work directory, kept (the generated cluster; each repetition's copies are removed as it
    /// ends); default: a temp dir, removed.
    pub(crate) dir: Option<PathBuf>,
    /// Skip the S3 rows even when Garage is installed.
    pub(crate) no_s3: bool,
    /// Run the coordinator scale test instead of the throughput table.
    pub(crate) scale: bool,
    /// Scale test: data nodes (each with its own worker process).
    pub(crate) scale_nodes: usize,
    /// Scale test: the two objects-per-node counts compared.
    pub(crate) scale_objects: (u32, u32),
    /// With `--scale`: simulate this many workers in this process instead of running a worker
    /// process per node.
    pub(crate) simulate: Option<usize>,
    /// Measure a worker's memory with this many blobs in its node's index.
    pub(crate) index_blobs: Option<u64>,
    /// Without `--scale`: compare with restic on a tree of this many objects (`--size` is then
    /// the part in large files).
    pub(crate) objects: Option<u64>,
    /// QuestDB's checkpoint hold and backup time with and without snapshots (needs root).
    pub(crate) questdb_snapshots: bool,
}

const USAGE: &str = "bench [--size 256MiB] [--reps 3] [--out bench.json] [--dir DIR] [--no-s3]
bench --objects 1000000 [--size 1GiB] [--reps 3] [--out bench-objects.json] [--dir DIR]
bench --scale [--nodes 100] [--objects 100,1000] [--out bench-scale.json] [--dir DIR]
bench --scale --simulate 1000 [--out bench-scale.json]
bench --index-blobs 10000000 [--size 256MiB] [--out bench-index.json]
bench --questdb-snapshots [--size 2GiB] [--reps 3] [--out bench-snapshots.json]";

/// Parses `std::env::args`.
///
/// # Errors
/// An unknown flag or a value that does not parse, named.
pub(crate) fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        size: "256MiB".into(),
        reps: 3,
        out: PathBuf::new(),
        dir: None,
        no_s3: false,
        scale: false,
        scale_nodes: 100,
        scale_objects: (100, 1000),
        objects: None,
        simulate: None,
        index_blobs: None,
        questdb_snapshots: false,
    };
    let mut objects_text = None;
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--size" => args.size = value()?,
            "--reps" => args.reps = value()?.parse().context("--reps takes a number")?,
            "--out" => args.out = value()?.into(),
            "--dir" => args.dir = Some(value()?.into()),
            "--no-s3" => args.no_s3 = true,
            "--questdb-snapshots" => args.questdb_snapshots = true,
            "--scale" => args.scale = true,
            "--simulate" => {
                args.simulate =
                    Some(value()?.parse().context("--simulate takes a number of workers")?)
            }
            "--index-blobs" => {
                args.index_blobs = Some(value()?.parse().context("--index-blobs takes a count")?)
            }
            "--nodes" => args.scale_nodes = value()?.parse().context("--nodes takes a number")?,
            "--objects" => objects_text = Some(value()?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\nusage: {USAGE}"),
        }
    }
    if let Some(text) = objects_text {
        if args.scale {
            let (low, high) = text
                .split_once(',')
                .context("--scale --objects takes two counts per node, e.g. `100,1000`")?;
            args.scale_objects = (
                low.trim().parse().context("--objects: not a number")?,
                high.trim().parse().context("--objects: not a number")?,
            );
        } else {
            args.objects = Some(text.trim().parse().context("--objects takes a count of objects")?);
            if !std::env::args().any(|arg| arg == "--size") {
                args.size = "1GiB".to_string();
            }
        }
    }
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if args.out.as_os_str().is_empty() {
        args.out = match (args.scale, args.objects) {
            (true, _) => "bench-scale.json",
            (false, Some(_)) => "bench-objects.json",
            (false, None) if args.index_blobs.is_some() => "bench-index.json",
            (false, None) if args.questdb_snapshots => "bench-snapshots.json",
            (false, None) => "bench.json",
        }
        .into();
    }
    Ok(args)
}
