//! Schedule management for the Control API: convert, call the core's rule, propose.

use bk_proto::model::Retention;
use bk_proto::pb;

use crate::coordinator::Coordinator;
use crate::core::schedule::Schedule;
use crate::core::submit::schedule::put_schedule;
use crate::core::{Command, CommandResponse};
use crate::error::{CoordinatorError, CoordinatorResult};

/// Registers or replaces a schedule (its last run is kept when replacing).
///
/// # Errors
/// [`CoordinatorError::InvalidRequest`] for a missing name, an unknown source or repository, or
/// an invalid cron pattern.
pub async fn add_schedule(
    coordinator: &Coordinator,
    schedule: pb::Schedule,
) -> CoordinatorResult<()> {
    let schedule = schedule_from_pb(schedule, crate::clock::now_ms());
    let command = coordinator
        .read(|state| put_schedule(state, schedule))
        .map_err(CoordinatorError::InvalidRequest)?;
    propose(coordinator, command).await
}

/// Every schedule, by name.
pub fn list_schedules(coordinator: &Coordinator) -> Vec<pb::Schedule> {
    coordinator.read(|state| state.schedules.values().map(schedule_to_pb).collect())
}

/// Removes a schedule.
///
/// # Errors
/// [`CoordinatorError::NotFound`] when there is none by that name.
pub async fn remove_schedule(coordinator: &Coordinator, name: String) -> CoordinatorResult<()> {
    propose(coordinator, Command::RemoveSchedule { name }).await
}

async fn propose(coordinator: &Coordinator, command: Command) -> CoordinatorResult<()> {
    match coordinator.propose(command).await? {
        CommandResponse::Applied => Ok(()),
        CommandResponse::Rejected(rejection) => Err(rejection.into()),
    }
}

/// A schedule as asked (no prune unless some `keep` is set; never run yet).
fn schedule_from_pb(schedule: pb::Schedule, now_ms: u64) -> Schedule {
    let retention = Retention {
        keep_last: schedule.prune_keep_last,
        keep_daily: schedule.prune_keep_daily,
        keep_weekly: schedule.prune_keep_weekly,
        keep_monthly: schedule.prune_keep_monthly,
    };
    Schedule {
        name: schedule.name,
        source: schedule.source.into(),
        repository: schedule.repository,
        cron: schedule.cron,
        prune: (retention != Retention::default()).then_some(retention),
        drill: schedule.drill,
        created_at_ms: now_ms,
        last_run_ms: None,
    }
}

fn schedule_to_pb(schedule: &Schedule) -> pb::Schedule {
    let prune = schedule.prune.unwrap_or_default();
    pb::Schedule {
        name: schedule.name.clone(),
        source: schedule.source.to_string(),
        repository: schedule.repository.clone(),
        cron: schedule.cron.clone(),
        prune_keep_last: prune.keep_last,
        prune_keep_daily: prune.keep_daily,
        prune_keep_weekly: prune.keep_weekly,
        prune_keep_monthly: prune.keep_monthly,
        last_run_ms: schedule.last_run_ms.unwrap_or(0),
        drill: schedule.drill,
    }
}
