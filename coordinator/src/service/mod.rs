//! gRPC services: each handler converts, calls the domain, converts back. Errors become gRPC
//! statuses only through `From<CoordinatorError> for Status` (in `crate::error`).

pub mod cluster;
pub mod control;
pub mod convert;
pub mod schedules;
pub mod worker_hub;
pub mod worker_requests;
