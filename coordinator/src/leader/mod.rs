//! The leader's side of running jobs: who is alive, how far tasks got, and taking leases back
//! from workers that went silent. Nothing here is replicated except the commands it proposes.

pub mod lease;
pub mod runtime;
pub mod schedules;
