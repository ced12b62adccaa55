//! The stage order is a real barrier: from the job's recorded task times, no task of phase N+1
//! started before the last task of phase N finished.

use bk_tests::layout::LayoutParams;

use crate::support::{phase_windows, Cluster};

#[test]
fn test_no_task_of_a_phase_starts_before_the_previous_phase_finished() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(4 << 20));
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    assert!(succeeded, "backup failed: {job}");
    let windows = phase_windows(&job);
    let names: Vec<&str> = windows.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(names, ["compactor", "nodes", "catalog", "licence", "commit"]);
    for pair in windows.windows(2) {
        let ((previous, _, previous_finish), (next, next_start, _)) = (&pair[0], &pair[1]);
        assert!(
            next_start >= previous_finish,
            "phase `{next}` started at {next_start} before phase `{previous}` finished at {previous_finish}"
        );
    }
    // The node phase ran its tasks on the right workers.
    for task in job["phases"][1]["tasks"].as_array().unwrap() {
        let node = task["node"].as_str().unwrap();
        assert_eq!(task["worker_id"].as_str().unwrap(), format!("src/{node}"), "{task}");
    }
}
