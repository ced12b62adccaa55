//! A running job's progress per phase and node, as the console draws it: objects and bytes
//! done of those known, the rate since the group's first task started, and when it should end.
//! Pure: a function of the job as the Control API shows it and the time.

use bk_proto::pb;

/// One bar: the tasks of one node in one phase that move objects.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GroupProgress {
    /// The phase's name.
    pub(crate) phase: String,
    /// The node (empty: any worker of the source).
    pub(crate) node: String,
    /// Tasks in the group, and of those, ended.
    pub(crate) tasks: usize,
    /// Tasks that ended (succeeded or failed).
    pub(crate) tasks_done: usize,
    /// Objects done, and known in all (0 until the workers have listed what they copy).
    pub(crate) objects_done: u64,
    /// Objects known.
    pub(crate) objects_total: u64,
    /// Bytes done.
    pub(crate) bytes_done: u64,
    /// Bytes known.
    pub(crate) bytes_total: u64,
    /// Bytes per second since the group's first task started; `None` before one has.
    pub(crate) bytes_per_second: Option<f64>,
    /// Milliseconds until the known bytes are done at that rate.
    pub(crate) eta_ms: Option<u64>,
    /// Why its pending tasks wait, deduplicated.
    pub(crate) waiting: Vec<String>,
}

impl GroupProgress {
    /// Bytes done as a fraction of those known (0 when none are known yet).
    pub(crate) fn fraction(&self) -> f64 {
        if self.bytes_total == 0 {
            return if self.tasks > 0 && self.tasks_done == self.tasks { 1.0 } else { 0.0 };
        }
        (self.bytes_done as f64 / self.bytes_total as f64).min(1.0)
    }
}

/// Groups of every phase of `job`, in phase order then node order. Phases whose tasks move no
/// objects (checkpoints, commits) get one group per node too, so waiting reasons show.
pub(crate) fn job_progress(job: &pb::Job, now_ms: u64) -> Vec<GroupProgress> {
    let mut groups: Vec<GroupProgress> = Vec::new();
    for phase in &job.phases {
        let first = groups.len();
        for task in &phase.tasks {
            let index = match groups[first..].iter().position(|group| group.node == task.node) {
                Some(index) => first + index,
                None => {
                    groups.push(empty(&phase.name, &task.node));
                    groups.len() - 1
                }
            };
            add(&mut groups[index], task);
        }
        for group in &mut groups[first..] {
            let started = phase
                .tasks
                .iter()
                .filter(|task| task.node == group.node && task.started_at_ms > 0)
                .map(|task| task.started_at_ms)
                .min();
            rate(group, started, now_ms);
        }
    }
    groups
}

fn empty(phase: &str, node: &str) -> GroupProgress {
    GroupProgress {
        phase: phase.to_string(),
        node: node.to_string(),
        tasks: 0,
        tasks_done: 0,
        objects_done: 0,
        objects_total: 0,
        bytes_done: 0,
        bytes_total: 0,
        bytes_per_second: None,
        eta_ms: None,
        waiting: Vec::new(),
    }
}

fn add(group: &mut GroupProgress, task: &pb::Task) {
    group.tasks += 1;
    let state = pb::TaskState::try_from(task.state).unwrap_or(pb::TaskState::Unspecified);
    if matches!(state, pb::TaskState::Succeeded | pb::TaskState::Failed | pb::TaskState::Skipped) {
        group.tasks_done += 1;
    }
    if !task.waiting_reason.is_empty() && !group.waiting.contains(&task.waiting_reason) {
        group.waiting.push(task.waiting_reason.clone());
    }
    if let (true, Some(progress)) = (task.moves_objects, &task.progress) {
        group.objects_done += progress.objects_done;
        group.objects_total += progress.objects_total;
        group.bytes_done += progress.bytes_done;
        group.bytes_total += progress.bytes_total;
    }
}

fn rate(group: &mut GroupProgress, started_at_ms: Option<u64>, now_ms: u64) {
    let Some(started) = started_at_ms else { return };
    let elapsed_ms = now_ms.saturating_sub(started);
    if elapsed_ms == 0 || group.bytes_done == 0 {
        return;
    }
    let per_second = group.bytes_done as f64 * 1000.0 / elapsed_ms as f64;
    group.bytes_per_second = Some(per_second);
    if group.tasks_done < group.tasks && group.bytes_total > group.bytes_done {
        let remaining = (group.bytes_total - group.bytes_done) as f64;
        group.eta_ms = Some((remaining / per_second * 1000.0) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(
        node: &str,
        state: pb::TaskState,
        started: u64,
        progress: Option<(u64, u64)>,
    ) -> pb::Task {
        pb::Task {
            node: node.to_string(),
            state: state as i32,
            started_at_ms: started,
            moves_objects: progress.is_some(),
            progress: progress.map(|(done, total)| pb::Progress {
                objects_done: done / 10,
                bytes_done: done,
                objects_total: total / 10,
                bytes_total: total,
            }),
            ..pb::Task::default()
        }
    }

    #[test]
    fn test_groups_are_per_phase_and_node_with_rate_and_eta() {
        let mut waiting = task("node2", pb::TaskState::Pending, 0, None);
        waiting.waiting_reason = "no live worker for node `node2`".to_string();
        let job = pb::Job {
            phases: vec![
                pb::Phase {
                    name: "compactor".into(),
                    tasks: vec![task("c", pb::TaskState::Succeeded, 1_000, Some((500, 500)))],
                    summary: None,
                },
                pb::Phase {
                    name: "nodes".into(),
                    tasks: vec![
                        task("node1", pb::TaskState::Running, 10_000, Some((1_000, 4_000))),
                        task("node1", pb::TaskState::Running, 11_000, Some((1_000, 4_000))),
                        waiting,
                    ],
                    summary: None,
                },
            ],
            ..pb::Job::default()
        };
        let groups = job_progress(&job, 12_000);
        let names: Vec<_> = groups.iter().map(|g| (g.phase.as_str(), g.node.as_str())).collect();
        assert_eq!(names, [("compactor", "c"), ("nodes", "node1"), ("nodes", "node2")]);
        let node1 = &groups[1];
        assert_eq!((node1.bytes_done, node1.bytes_total, node1.tasks), (2_000, 8_000, 2));
        // 2,000 bytes in the 2 s since its first task started: 1,000 B/s, 6 s to go.
        assert_eq!(node1.bytes_per_second, Some(1_000.0));
        assert_eq!(node1.eta_ms, Some(6_000));
        assert_eq!(node1.fraction(), 0.25);
        assert_eq!(groups[2].waiting, ["no live worker for node `node2`"]);
        assert_eq!((groups[2].bytes_per_second, groups[2].fraction()), (None, 0.0));
        assert_eq!((groups[0].eta_ms, groups[0].fraction()), (None, 1.0), "done: no ETA");
    }
}
