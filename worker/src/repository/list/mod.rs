//! Object lists: what a backup holds, as sorted runs of binary chunks, priced by the change.
//!
//! ```text
//! <repo>/lists/<2 hex>/<64 hex>   one chunk of a run: sealed, named by a keyed hash of its plaintext
//! ```
//! A backup's manifest names, per *scope* (the keys one copy task covers, see
//! [`crate::repository::manifest::Scope`]), a stack of **runs**, oldest first: a *base* run
//! holding every object of the scope, then *delta* runs, each holding what one later backup
//! found new or changed and, as deletions, what it found gone. The scope's list is the runs
//! merged by key, the newest item of each key winning ([`merge::MergedView`]). So:
//!
//! - an **unchanged** scope costs nothing: the new manifest names the parent's runs as they are;
//! - a **changed** scope costs one delta run the size of the change (a live node's new WAL files
//!   and parquet, the WAL it deleted), not a rewrite of the node's list: a node of a million
//!   objects that gained a hundred writes a hundred items;
//! - the stack stays short: when it would exceed [`MAX_RUNS`] runs, or the deltas together grow
//!   past [`MAX_DELTA_SHARE_PERCENT`] % of the base, the next backup writes a new base instead
//!   (one full write now and then, as an LSM tree compacts);
//! - every reader — the next backup's diff, restore, verify, prune, drills and the consistency
//!   check — streams a scope as a merge of at most [`MAX_RUNS`] sorted runs, one chunk (at
//!   most 4,096 items) of each in memory: a node's list is never held whole.
//!
//! A run is cut into chunks of at most 4,096 items or 512 KiB; a chunk is a file of its own,
//! except a small one (a few hundred items), which travels inline in the record that names it
//! (a staging record, then the manifest), saving a PUT. Chunks are content-addressed: a run
//! written twice (a retried task) names the same files. Their binary form is in [`codec`]:
//! keys share their prefix with the previous key, integers are varints, ids are raw bytes.
//!
//! # Layout
//! - [`entry`]: an object as a list records it, and a deletion.
//! - [`codec`]: a chunk's bytes.
//! - [`run`]: chunks, runs, writing a run.
//! - [`merge`]: reading runs back in key order, one or a stack.

pub mod codec;
pub mod entry;
pub mod merge;
pub mod run;

pub use entry::{ListItem, ObjectEntry};
pub use merge::{MergedView, RunCursor};
pub use run::{ChunkRef, RunRef, RunWriter};

/// Runs a scope's stack holds at most (one base and deltas).
pub const MAX_RUNS: usize = 8;
/// The deltas of a stack together hold at most this share of its base's items; past it the
/// next backup writes a new base.
pub const MAX_DELTA_SHARE_PERCENT: u64 = 25;

/// Whether a new backup of a scope whose parent stack is `runs` should write a new base rather
/// than a delta on top: the stack would grow past [`MAX_RUNS`], or its deltas already weigh
/// more than [`MAX_DELTA_SHARE_PERCENT`] % of its base (readers would do more merging than the
/// list is worth). Pure.
pub fn needs_new_base(runs: &[RunRef]) -> bool {
    let Some((base, deltas)) = runs.split_first() else { return true };
    let delta_items: u64 = deltas.iter().map(RunRef::num_items).sum();
    runs.len() >= MAX_RUNS || delta_items * 100 > base.num_items().max(1) * MAX_DELTA_SHARE_PERCENT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(items: u64) -> RunRef {
        RunRef {
            chunks: vec![ChunkRef {
                id: String::new(),
                inline: None,
                num_items: items,
                num_deleted: 0,
                num_bytes: 0,
                first: "a".into(),
                last: "b".into(),
            }],
        }
    }

    #[test]
    fn test_a_stack_gets_a_new_base_when_too_tall_or_its_deltas_too_heavy() {
        let cases: Vec<(&str, Vec<RunRef>, bool)> = vec![
            ("no parent", vec![], true),
            ("a base alone", vec![run(1000)], false),
            ("small deltas", vec![run(1000), run(10), run(10)], false),
            ("deltas at a quarter", vec![run(1000), run(125), run(125)], false),
            ("deltas past a quarter", vec![run(1000), run(125), run(126)], true),
            (
                "eight runs",
                (0..8).map(|_| run(1000)).take(1).chain((0..7).map(|_| run(1))).collect(),
                true,
            ),
            (
                "seven runs",
                (0..1).map(|_| run(1000)).chain((0..6).map(|_| run(1))).collect(),
                false,
            ),
            ("an empty base with a delta", vec![run(0), run(1)], true),
        ];
        for (case, runs, want) in cases {
            assert_eq!(needs_new_base(&runs), want, "{case}");
        }
    }
}
