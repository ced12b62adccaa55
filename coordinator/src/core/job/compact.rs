//! Compacting a finished job: its per-task detail dropped, a [`JobSummary`] kept (why: see
//! [`super::summary`]).

use bk_proto::ids::TaskSlot;

use super::summary::{summarise, JobSummary};
use super::Job;
use crate::core::placement_index::PlacementIndex;

impl Job {
    /// Drops the job's per-task detail, keeping a [`JobSummary`]. Only for a job that ended;
    /// a job already compacted, or still running, is left as it is.
    pub fn compact(&mut self) {
        if !self.state().is_terminal() || self.summary.is_some() {
            return;
        }
        let phases = self
            .spec
            .phases
            .iter()
            .zip(&self.phases)
            .enumerate()
            .map(|(phase, (planned, runs))| {
                let tasks =
                    planned.tasks.iter().zip(runs).enumerate().map(|(index, (task, run))| {
                        (TaskSlot::Phase { phase: phase as u32, index: index as u32 }, task, run)
                    });
                summarise(&planned.name, tasks)
            })
            .collect();
        let cleanup_tasks = self
            .spec
            .cleanup
            .iter()
            .zip(&self.cleanup)
            .enumerate()
            .map(|(index, (task, run))| (TaskSlot::Cleanup { index: index as u32 }, task, run));
        let cleanup = summarise("cleanup", cleanup_tasks);
        self.summary = Some(JobSummary { phases, cleanup });
        for phase in &mut self.spec.phases {
            phase.tasks = Vec::new();
        }
        self.spec.cleanup = Vec::new();
        for runs in &mut self.phases {
            *runs = Vec::new();
        }
        self.cleanup = Vec::new();
        self.placements = PlacementIndex::default();
    }
}
