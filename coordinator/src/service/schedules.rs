//! Schedule management for the Control API.

use bk_proto::model::Retention;
use bk_proto::pb;

use crate::coordinator::Coordinator;
use crate::core::schedule::{validate_cron, Schedule};
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
    if schedule.name.trim().is_empty() {
        return Err(CoordinatorError::InvalidRequest("a schedule needs a name".to_string()));
    }
    validate_cron(&schedule.cron).map_err(CoordinatorError::InvalidRequest)?;
    let retention = Retention {
        keep_last: schedule.prune_keep_last,
        keep_daily: schedule.prune_keep_daily,
        keep_weekly: schedule.prune_keep_weekly,
        keep_monthly: schedule.prune_keep_monthly,
    };
    let prune = (retention != Retention::default()).then_some(retention);
    if schedule.drill && prune.is_some() {
        return Err(CoordinatorError::InvalidRequest(
            "a drill schedule backs nothing up, so it cannot prune: give the prune to the backup schedule"
                .to_string(),
        ));
    }
    let last_run_ms = coordinator.shared.read(|state| {
        if !state.sources.contains_key(&schedule.source) {
            return Err(CoordinatorError::InvalidRequest(format!(
                "unknown source `{}`",
                schedule.source
            )));
        }
        if !state.repositories.contains_key(&schedule.repository) {
            return Err(CoordinatorError::InvalidRequest(format!(
                "unknown repository `{}`",
                schedule.repository
            )));
        }
        Ok(state.schedules.get(&schedule.name).and_then(|existing| existing.last_run_ms))
    })?;
    let domain = Schedule {
        name: schedule.name,
        source: schedule.source,
        repository: schedule.repository,
        cron: schedule.cron,
        prune,
        drill: schedule.drill,
        created_at_ms: crate::clock::now_ms(),
        last_run_ms,
    };
    match coordinator.propose(Command::PutSchedule(domain)).await? {
        CommandResponse::Applied => Ok(()),
        CommandResponse::Rejected(rejection) => Err(rejection.into()),
    }
}

/// Every schedule, by name.
pub fn list_schedules(coordinator: &Coordinator) -> Vec<pb::Schedule> {
    coordinator.shared.read(|state| {
        state
            .schedules
            .values()
            .map(|schedule| {
                let prune = schedule.prune.unwrap_or_default();
                pb::Schedule {
                    name: schedule.name.clone(),
                    source: schedule.source.clone(),
                    repository: schedule.repository.clone(),
                    cron: schedule.cron.clone(),
                    prune_keep_last: prune.keep_last,
                    prune_keep_daily: prune.keep_daily,
                    prune_keep_weekly: prune.keep_weekly,
                    prune_keep_monthly: prune.keep_monthly,
                    last_run_ms: schedule.last_run_ms.unwrap_or(0),
                    drill: schedule.drill,
                }
            })
            .collect()
    })
}

/// Removes a schedule.
///
/// # Errors
/// [`CoordinatorError::NotFound`] when there is none by that name.
pub async fn remove_schedule(coordinator: &Coordinator, name: String) -> CoordinatorResult<()> {
    match coordinator.propose(Command::RemoveSchedule { name: name.clone() }).await? {
        CommandResponse::Applied => Ok(()),
        CommandResponse::Rejected(rejection) => Err(rejection.into()),
    }
}
