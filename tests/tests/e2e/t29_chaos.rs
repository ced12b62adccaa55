//! The seeded fault campaign (`bk_tests::chaos`) on a fixed set of seeds: each a cluster of 3
//! replicas and 4 workers under a live writer, a drawn workload and drawn faults (kill -9 of
//! the leader, a follower or a worker; SIGSTOP of a worker), then every invariant checked. The
//! full campaign runs with `cargo run --release -p bk-tests --bin chaos -- --seeds 500`.

use bk_tests::chaos::run_schedule;

/// Seeds whose draws together cover every fault kind (see their lines in the test output).
const SEEDS: [u64; 3] = [1, 2, 3];

#[test]
fn test_fixed_seeds_hold_every_invariant_under_faults() {
    let mut failures = Vec::new();
    for seed in SEEDS {
        let outcome = run_schedule(seed).unwrap();
        println!("{}", outcome.line());
        if !outcome.violations.is_empty() {
            failures.push(format!(
                "seed {seed}: {}\n  replay: cargo run --release -p bk-tests --bin chaos -- --seed {seed}",
                outcome.violations.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
