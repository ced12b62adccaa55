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
}

const USAGE: &str = "bench [--size 256MiB] [--reps 3] [--out bench.json] [--dir DIR] [--no-s3]
bench --scale [--nodes 100] [--objects 100,1000] [--out bench-scale.json] [--dir DIR]";

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
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--size" => args.size = value()?,
            "--reps" => args.reps = value()?.parse().context("--reps takes a number")?,
            "--out" => args.out = value()?.into(),
            "--dir" => args.dir = Some(value()?.into()),
            "--no-s3" => args.no_s3 = true,
            "--scale" => args.scale = true,
            "--nodes" => args.scale_nodes = value()?.parse().context("--nodes takes a number")?,
            "--objects" => {
                let text = value()?;
                let (low, high) = text
                    .split_once(',')
                    .context("--objects takes two counts per node, e.g. `100,1000`")?;
                args.scale_objects = (
                    low.trim().parse().context("--objects: not a number")?,
                    high.trim().parse().context("--objects: not a number")?,
                );
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\nusage: {USAGE}"),
        }
    }
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if args.out.as_os_str().is_empty() {
        args.out = if args.scale { "bench-scale.json" } else { "bench.json" }.into();
    }
    Ok(args)
}
