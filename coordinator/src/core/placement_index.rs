//! Which of a job's tasks are placed on which node. Pure, derived from the plan.
//!
//! A pull looks at the pulling worker's own node's tasks (and those any worker may run), not at
//! every task of the job: a backup of a thousand-node cluster has some 5,000 tasks, and a
//! thousand workers pull while it runs.

use std::collections::BTreeMap;

use bk_proto::ids::TaskSlot;

use super::job::spec::{JobSpec, Placement};

/// A job's task slots by placement, in plan order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementIndex {
    /// Tasks placed on one node, by node.
    by_node: BTreeMap<String, Vec<TaskSlot>>,
    /// Tasks any worker of a kind may run (any node of the source, a drill worker, a holder of
    /// the repository's passphrase).
    elsewhere: Vec<TaskSlot>,
}

impl PlacementIndex {
    /// The index of `spec`'s tasks.
    pub fn of(spec: &JobSpec) -> Self {
        let mut index = Self::default();
        let phase_tasks = spec.phases.iter().enumerate().flat_map(|(phase, planned)| {
            planned.tasks.iter().enumerate().map(move |(task, planned)| {
                (TaskSlot::Phase { phase: phase as u32, index: task as u32 }, &planned.placement)
            })
        });
        let cleanup_tasks =
            spec.cleanup.iter().enumerate().map(|(task, planned)| {
                (TaskSlot::Cleanup { index: task as u32 }, &planned.placement)
            });
        for (slot, placement) in phase_tasks.chain(cleanup_tasks) {
            match placement {
                Placement::Node(node) => index.by_node.entry(node.clone()).or_default().push(slot),
                _ => index.elsewhere.push(slot),
            }
        }
        index
    }

    /// The tasks `node`'s worker may run without standing in for another node: those placed on
    /// it and those placed anywhere, merged in plan order.
    pub fn for_node(&self, node: &str) -> Vec<TaskSlot> {
        let own = self.by_node.get(node).map_or(&[][..], Vec::as_slice);
        let mut slots: Vec<TaskSlot> = own.iter().chain(&self.elsewhere).copied().collect();
        slots.sort_unstable();
        slots
    }

    /// The tasks placed on nodes other than `node`, by node (where a worker may stand in).
    pub fn on_other_nodes<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a [TaskSlot])> + 'a {
        self.by_node
            .iter()
            .filter(move |(other, _)| other.as_str() != node)
            .map(|(other, slots)| (other.as_str(), slots.as_slice()))
    }
}
