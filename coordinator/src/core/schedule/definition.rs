//! A schedule as registered, and the cron rule that says when its next slot is due.

use bk_proto::ids::SourceName;
use std::str::FromStr;

use bk_proto::model::Retention;
use chrono::{TimeZone, Utc};
use croner::Cron;
use serde::{Deserialize, Serialize};

/// A registered schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// The source backed up.
    pub source: SourceName,
    /// The repository backed up into.
    pub repository: String,
    /// Cron pattern, UTC: 5 fields (`0 2 * * *`), or 6 with seconds first.
    pub cron: String,
    /// A prune to submit after each backup, if any.
    pub prune: Option<Retention>,
    /// Drill the newest backup of the source in the repository instead of backing up (e.g. a
    /// weekly drill after the nightly backups).
    #[serde(default)]
    pub drill: bool,
    /// When it was registered (slots before it never run).
    pub created_at_ms: u64,
    /// The slot of the last run.
    pub last_run_ms: Option<u64>,
}

/// Checks a cron pattern.
///
/// # Errors
/// The parser's message, naming the pattern.
pub fn validate_cron(pattern: &str) -> Result<(), String> {
    Cron::from_str(pattern)
        .map(|_| ())
        .map_err(|error| format!("invalid cron pattern `{pattern}`: {error}"))
}

/// The slot to run now: the latest occurrence at or before `now_ms` that is after the last run
/// (or the registration). `None` when nothing is due.
///
/// # Errors
/// An invalid pattern.
pub fn due_slot(schedule: &Schedule, now_ms: u64) -> Result<Option<u64>, String> {
    let cron = Cron::from_str(&schedule.cron)
        .map_err(|error| format!("invalid cron pattern `{}`: {error}", schedule.cron))?;
    let now = Utc.timestamp_millis_opt(now_ms as i64).single().ok_or("time out of range")?;
    let Ok(latest) = cron.find_previous_occurrence(&now, true) else { return Ok(None) };
    let latest_ms = latest.timestamp_millis() as u64;
    let after = schedule.last_run_ms.unwrap_or(schedule.created_at_ms);
    Ok((latest_ms > after).then_some(latest_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;
    /// 2026-11-22T02:00:00Z.
    const TWO_AM: u64 = 1_795_312_800_000;

    fn schedule(cron: &str, created_at_ms: u64, last_run_ms: Option<u64>) -> Schedule {
        Schedule {
            name: "nightly".into(),
            source: "s".into(),
            repository: "r".into(),
            cron: cron.into(),
            prune: None,
            drill: false,
            created_at_ms,
            last_run_ms,
        }
    }

    #[test]
    fn test_due_slots() {
        let daily = "0 2 * * *";
        let cases: Vec<(Schedule, u64, Option<u64>)> = vec![
            // Registered at 01:00, now 01:59: nothing yet.
            (schedule(daily, TWO_AM - 60 * MINUTE, None), TWO_AM - MINUTE, None),
            // Now 02:00:30: the 02:00 slot is due.
            (schedule(daily, TWO_AM - 60 * MINUTE, None), TWO_AM + 30_000, Some(TWO_AM)),
            // It ran: not again the same day.
            (schedule(daily, TWO_AM - 60 * MINUTE, Some(TWO_AM)), TWO_AM + 20 * 60 * MINUTE, None),
            // Down for three days: only the latest missed slot runs, once.
            (
                schedule(daily, TWO_AM - 60 * MINUTE, Some(TWO_AM)),
                TWO_AM + 3 * 1440 * MINUTE + MINUTE,
                Some(TWO_AM + 3 * 1440 * MINUTE),
            ),
            // Seconds: every 5 s.
            (schedule("*/5 * * * * *", TWO_AM, None), TWO_AM + 12_000, Some(TWO_AM + 10_000)),
        ];
        for (schedule, now, expected) in cases {
            assert_eq!(due_slot(&schedule, now), Ok(expected), "{} at {now}", schedule.cron);
        }
        assert!(validate_cron("61 * * * *")
            .unwrap_err()
            .contains("invalid cron pattern `61 * * * *`"));
    }
}
