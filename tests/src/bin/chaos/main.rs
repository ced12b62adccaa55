//! The seeded fault campaign (`bk_tests::chaos`): runs schedules for a range of seeds and
//! reports them, one line each, then the totals: schedules, faults by kind, jobs by state,
//! invariant violations. A failing seed prints the command that replays it.
//!
//! `cargo run --release -p bk-tests --bin chaos -- --seeds 500 [--first 1]`
//! `cargo run --release -p bk-tests --bin chaos -- --seed 17`
//! `cargo run --release -p bk-tests --bin chaos -- --questdb --seeds 100` (QuestDB schedules)
//!
//! Each line ends with the seconds each stage took; `CHAOS_DEBUG=1` also prints every check
//! job's duration and record (where a slow seed spends its time).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Context};
use bk_tests::chaos::{run_questdb_schedule, run_schedule};

fn main() -> anyhow::Result<()> {
    let (mut first, mut count, mut questdb) = (1u64, 20u64, false);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seeds" => count = value()?.parse().context("--seeds takes a count")?,
            "--first" => first = value()?.parse().context("--first takes a seed")?,
            "--seed" => {
                first = value()?.parse().context("--seed takes a seed")?;
                count = 1;
            }
            "--questdb" => questdb = true,
            "--help" | "-h" => {
                println!("chaos [--questdb] [--seeds 20] [--first 1] | chaos [--questdb] --seed S");
                return Ok(());
            }
            other => bail!(
                "unknown argument `{other}`: chaos [--questdb] [--seeds N] [--first S] | --seed S"
            ),
        }
    }
    let started = Instant::now();
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    let mut jobs: BTreeMap<(String, String), usize> = BTreeMap::new();
    let (mut violations, mut failing, mut backups, mut setup_errors) = (0, Vec::new(), 0, 0);
    for seed in first..first + count {
        let run = if questdb { run_questdb_schedule(seed) } else { run_schedule(seed) };
        match run {
            Ok(outcome) => {
                println!("{}", outcome.line());
                for failure in &outcome.failures {
                    println!("  failed: {failure}");
                }
                for fault in &outcome.faults {
                    *faults.entry(fault.name()).or_default() += 1;
                }
                for (key, count) in &outcome.jobs {
                    *jobs.entry(key.clone()).or_default() += count;
                }
                backups += outcome.backups;
                if !outcome.violations.is_empty() {
                    for violation in &outcome.violations {
                        println!("  VIOLATION: {violation}");
                    }
                    let flag = if questdb { "--questdb " } else { "" };
                    println!(
                        "  replay: cargo run --release -p bk-tests --bin chaos -- {flag}--seed {seed}"
                    );
                    violations += outcome.violations.len();
                    failing.push(seed);
                }
            }
            Err(error) => {
                setup_errors += 1;
                println!("seed {seed:>4}: the cluster could not be set up: {error:#}");
            }
        }
    }
    println!(
        "\n{count} schedule(s) in {:.0} s; {setup_errors} could not be set up; faults: {faults:?}",
        started.elapsed().as_secs_f64()
    );
    println!("jobs by kind/state: {jobs:?}; {backups} committed backup(s) checked");
    println!("invariant violations: {violations} (seeds {failing:?})");
    if violations > 0 || setup_errors > 0 {
        bail!("{violations} violation(s) in {} seed(s)", failing.len());
    }
    Ok(())
}
