//! Schedules: backups (and optionally a prune), or restore drills, submitted by the leader on a
//! cron pattern.
//!
//! Exactly once across failovers: a run is the replicated [`Command::RunSchedule`] naming the
//! slot it fills; applying it is refused when the schedule's recorded last run already covers
//! that slot, so two leaders (an old one not yet aware it lost) cannot both run it. After
//! downtime only the latest missed slot runs: once on recovery, not once per missed slot.
//!
//! [`Command::RunSchedule`]: super::state::Command::RunSchedule

pub mod definition;
mod runs;

pub use definition::{due_slot, validate_cron, Schedule};
pub use runs::{due_runs, DueRuns};
