//! Registering a schedule: the checks a schedule must pass against the current state, into the
//! command that stores it. Pure.

use crate::core::schedule::definition::{validate_cron, Schedule};
use crate::core::state::{ClusterState, Command};

/// The command that stores `schedule`, keeping the last run of the one it replaces (so a
/// replaced schedule does not run a slot again).
///
/// # Errors
/// What is wrong with the request, and how to fix it: a missing name, an invalid cron pattern, a
/// drill schedule with a prune, an unknown source or repository.
pub fn put_schedule(state: &ClusterState, mut schedule: Schedule) -> Result<Command, String> {
    if schedule.name.trim().is_empty() {
        return Err("a schedule needs a name".to_string());
    }
    validate_cron(&schedule.cron)?;
    if schedule.drill && schedule.prune.is_some() {
        return Err("a drill schedule backs nothing up, so it cannot prune: give the prune to the backup schedule".to_string());
    }
    if !state.sources.contains_key(&schedule.source) {
        return Err(format!("unknown source `{}`", schedule.source));
    }
    if !state.repositories.contains_key(&schedule.repository) {
        return Err(format!("unknown repository `{}`", schedule.repository));
    }
    schedule.last_run_ms =
        state.schedules.get(&schedule.name).and_then(|existing| existing.last_run_ms);
    Ok(Command::PutSchedule(schedule))
}

#[cfg(test)]
mod tests {
    use bk_proto::model::Retention;

    use super::*;
    use crate::core::domain::{Repository, Source, SourceSpec};

    fn state() -> ClusterState {
        let mut state = ClusterState::default();
        let source = Source {
            name: "prod".into(),
            spec: SourceSpec::InfluxDb3Core { node: "n1".to_string(), http_endpoint: None },
        };
        state.apply(Command::PutSource(source));
        state.apply(Command::PutRepository(Repository::new("main", "file:///r", 1 << 20)));
        let mut existing = schedule("nightly");
        existing.last_run_ms = Some(42);
        state.apply(Command::PutSchedule(existing));
        state
    }

    fn schedule(name: &str) -> Schedule {
        Schedule {
            name: name.to_string(),
            source: "prod".into(),
            repository: "main".to_string(),
            cron: "0 3 * * *".to_string(),
            prune: None,
            drill: false,
            created_at_ms: 7,
            last_run_ms: None,
        }
    }

    const KEEP_LAST: Retention =
        Retention { keep_last: 3, keep_daily: 0, keep_weekly: 0, keep_monthly: 0 };

    #[test]
    fn test_a_schedule_is_refused_naming_what_is_wrong_or_stored_keeping_its_last_run() {
        type Change = fn(&mut Schedule);
        type Expected = Result<Option<u64>, &'static str>;
        let cases: Vec<(&str, Change, Expected)> = vec![
            ("new", |_| {}, Ok(None)),
            ("nightly", |_| {}, Ok(Some(42))),
            (" ", |_| {}, Err("needs a name")),
            ("bad-cron", |s| s.cron = "every day".to_string(), Err("every day")),
            ("drill-prune", |s| (s.drill, s.prune) = (true, Some(KEEP_LAST)), Err("cannot prune")),
            ("backup-prune", |s| s.prune = Some(KEEP_LAST), Ok(None)),
            ("no-source", |s| s.source = "gone".into(), Err("unknown source `gone`")),
            ("no-repo", |s| s.repository = "gone".to_string(), Err("unknown repository `gone`")),
        ];
        let state = state();
        for (name, change, expected) in cases {
            let mut asked = schedule(name);
            change(&mut asked);
            match (put_schedule(&state, asked), expected) {
                (Ok(Command::PutSchedule(stored)), Ok(last_run)) => {
                    assert_eq!(stored.last_run_ms, last_run, "{name}");
                    assert_eq!(stored.created_at_ms, 7, "{name}");
                }
                (Err(error), Err(fragment)) => assert!(error.contains(fragment), "{name}: {error}"),
                (outcome, expected) => panic!("{name}: {outcome:?}, expected {expected:?}"),
            }
        }
    }
}
