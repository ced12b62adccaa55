use bk_proto::model::Retention;

use super::*;
use crate::core::domain::{Repository, Source, SourceSpec};
use crate::core::JobKind;

/// 2026-11-22T02:00:00Z.
const TWO_AM: u64 = 1_795_312_800_000;

fn state(schedules: &[(&str, bool, Option<Retention>)]) -> ClusterState {
    let mut state = ClusterState::default();
    let spec = SourceSpec::InfluxDb3Core { node: "n".into(), http_endpoint: None };
    state.sources.insert("s".into(), Source { name: "s".into(), spec });
    state.repositories.insert("r".into(), Repository::new("r", "file:///r", 1 << 20));
    for (name, drill, prune) in schedules {
        let schedule = Schedule {
            name: name.to_string(),
            source: "s".into(),
            repository: "r".into(),
            cron: "0 2 * * *".into(),
            prune: *prune,
            drill: *drill,
            created_at_ms: TWO_AM - 3_600_000,
            last_run_ms: None,
        };
        state.schedules.insert(name.to_string(), schedule);
    }
    state
}

/// Ids 1, 2, 3, … so tests can say which job got which.
fn counter() -> impl FnMut() -> Ulid {
    let mut next = 0;
    move || {
        next += 1;
        Ulid::from_parts(1, next)
    }
}

/// A scheduled job: its id, kind and (schedule, slot).
type Scheduled = (JobId, JobKind, Option<(String, u64)>);

fn jobs(command: &Command) -> Vec<Scheduled> {
    let Command::RunSchedule { jobs, .. } = command else { panic!("{command:?}") };
    jobs.iter().map(|(id, spec)| (*id, spec.kind, spec.scheduled.clone())).collect()
}

#[test]
fn test_a_due_backup_schedule_submits_its_backup_then_its_prune() {
    let keep = Retention { keep_last: 3, keep_daily: 0, keep_weekly: 0, keep_monthly: 0 };
    let state = state(&[("nightly", false, Some(keep))]);
    let runs = due_runs(&state, TWO_AM + 1_000, counter());
    assert!(runs.problems.is_empty(), "{:?}", runs.problems);
    assert_eq!(runs.commands.len(), 1);
    let slot = Some(("nightly".to_string(), TWO_AM));
    let jobs = jobs(&runs.commands[0]);
    assert_eq!(jobs[0], (JobId::from_ulid(Ulid::from_parts(1, 1)), JobKind::Backup, slot.clone()));
    // The prune sorts right after its backup: the repository lock runs it once the backup ends.
    assert_eq!(jobs[1], (JobId::from_ulid(Ulid::from_parts(1, 2)), JobKind::Prune, slot));
    assert!(jobs[0].0 < jobs[1].0);
}

#[test]
fn test_nothing_runs_before_the_slot_or_twice_for_it() {
    let mut state = state(&[("nightly", false, None)]);
    assert!(due_runs(&state, TWO_AM - 1_000, counter()).commands.is_empty());
    if let Some(schedule) = state.schedules.get_mut("nightly") {
        schedule.last_run_ms = Some(TWO_AM);
    }
    assert!(due_runs(&state, TWO_AM + 1_000, counter()).commands.is_empty());
}

#[test]
fn test_a_drill_with_no_backup_marks_its_slot_and_says_why() {
    let state = state(&[("weekly-drill", true, None)]);
    let runs = due_runs(&state, TWO_AM + 1_000, counter());
    assert_eq!(runs.commands.len(), 1, "the slot is marked, so it does not repeat every tick");
    assert!(jobs(&runs.commands[0]).is_empty());
    assert_eq!(runs.problems.len(), 1);
    assert_eq!(runs.problems[0].0, "weekly-drill");
}

#[test]
fn test_a_backup_that_cannot_be_planned_stays_due_and_says_why() {
    let mut state = state(&[("nightly", false, None)]);
    state.sources.clear();
    let runs = due_runs(&state, TWO_AM + 1_000, counter());
    assert!(runs.commands.is_empty());
    assert!(runs.problems[0].1.contains("`s`"), "{:?}", runs.problems);
}

#[test]
fn test_a_slot_due_while_the_previous_run_has_not_ended_is_skipped_naming_the_job() {
    let mut state = state(&[("often", false, None)]);
    let first = due_runs(&state, TWO_AM + 1_000, counter());
    for command in first.commands {
        assert_eq!(state.apply(command), crate::core::CommandResponse::Applied);
    }
    let running = *state.jobs.keys().next().expect("the first run's backup");
    // The next slot (a day later with this cron) comes while that backup is still queued.
    let next_slot = TWO_AM + 86_400_000;
    let runs = due_runs(&state, next_slot + 1_000, counter());
    assert_eq!(runs.commands.len(), 1, "the slot is marked, so it does not repeat every tick");
    assert!(jobs(&runs.commands[0]).is_empty(), "no second backup is queued behind the first");
    assert!(runs.problems[0].1.contains(&running.to_string()), "{:?}", runs.problems);
    // Once the previous run has ended, the next slot runs again.
    let job = state.jobs.get_mut(&running).expect("the job");
    let outcome = crate::core::job::Outcome::Cancelled { error: "cancelled".into() };
    job.status = crate::core::JobStatus::Ended { outcome, at_ms: next_slot };
    let later = due_runs(&state, next_slot + 86_400_000 + 1_000, counter());
    assert_eq!(jobs(&later.commands[0]).len(), 1, "{:?}", later.problems);
}
