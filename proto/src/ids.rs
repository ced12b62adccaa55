//! Identifiers. Each is a newtype so that a job id can never be passed where a backup id belongs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Returned when a string is not a valid identifier of the expected kind.
#[derive(Debug, thiserror::Error)]
#[error("invalid {kind} `{value}`: {reason}")]
pub struct ParseIdError {
    kind: &'static str,
    value: String,
    reason: String,
}

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub Ulid);

        impl $name {
            /// Wraps a ULID minted by the leader (ids travel inside replicated commands, so
            /// every replica sees the same one).
            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Ulid::from_string(value).map(Self).map_err(|error| ParseIdError {
                    kind: $kind,
                    value: value.to_string(),
                    reason: error.to_string(),
                })
            }
        }
    };
}

ulid_id!(
    /// Identifies a job. ULIDs sort by creation time, so listings are naturally ordered.
    JobId,
    "job id"
);
ulid_id!(
    /// Identifies a backup; also the name of its directory in the repository.
    BackupId,
    "backup id"
);

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(name: String) -> Self {
                Self(name)
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self(name.to_string())
            }
        }

        /// Maps keyed by the id are looked up with a `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

name_id!(
    /// Identifies a worker (configured per worker; `<source>/<node>` by default). Serialized as
    /// its text, so records written with a bare string read the same.
    WorkerId
);
name_id!(
    /// A source's name, as the operator registered it. Serialized as its text.
    SourceName
);

/// Where a task sits in its job: in phase `phase` at `index`, or among the cleanup tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskSlot {
    /// The `index`-th task of phase `phase`.
    Phase {
        /// Phase index, from 0.
        phase: u32,
        /// Task index within the phase, from 0.
        index: u32,
    },
    /// The `index`-th cleanup task.
    Cleanup {
        /// Cleanup task index, from 0.
        index: u32,
    },
}

/// Identifies a task: its job and its slot. Printed `<job>/p<phase>/t<index>` or
/// `<job>/cleanup/t<index>`, which is also its directory under the repository's staging area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    /// The job the task belongs to.
    pub job_id: JobId,
    /// Its place in the job.
    pub slot: TaskSlot,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot {
            TaskSlot::Phase { phase, index } => write!(f, "{}/p{phase}/t{index}", self.job_id),
            TaskSlot::Cleanup { index } => write!(f, "{}/cleanup/t{index}", self.job_id),
        }
    }
}

impl FromStr for TaskId {
    type Err = ParseIdError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| ParseIdError {
            kind: "task id",
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = value.split('/').collect();
        let [job, group, task] = parts.as_slice() else {
            return Err(error("expected `<job>/p<phase>/t<index>` or `<job>/cleanup/t<index>`"));
        };
        let job_id: JobId = job.parse()?;
        let index: u32 = task
            .strip_prefix('t')
            .and_then(|index| index.parse().ok())
            .ok_or_else(|| error("task index must be `t<number>`"))?;
        let slot = if *group == "cleanup" {
            TaskSlot::Cleanup { index }
        } else {
            let phase = group
                .strip_prefix('p')
                .and_then(|phase| phase.parse().ok())
                .ok_or_else(|| error("phase must be `p<number>` or `cleanup`"))?;
            TaskSlot::Phase { phase, index }
        };
        Ok(TaskId { job_id, slot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_task_id_round_trips_through_display() {
        let job_id = JobId(Ulid::from_parts(1_700_000_000_000, 42));
        for slot in [TaskSlot::Phase { phase: 2, index: 7 }, TaskSlot::Cleanup { index: 0 }] {
            let task_id = TaskId { job_id, slot };
            assert_eq!(task_id.to_string().parse::<TaskId>().unwrap(), task_id);
        }
    }

    #[test]
    fn test_malformed_task_id_is_rejected_with_the_expected_shape() {
        let error = "nonsense".parse::<TaskId>().unwrap_err().to_string();
        assert!(error.contains("expected `<job>/p<phase>/t<index>`"), "{error}");
    }
}
