//! The web console: read-only pages at `/ui` on the replica's gRPC port (HTTP/1.1 or 2, TLS
//! when the port has it), for the operator's browser on a bad day.
//!
//! Every page is rendered on the server from the same views the Control API returns (the
//! console calls the Control service in-process), so what the console shows and what `bkctl`
//! or any gRPC client sees cannot disagree. One small script refreshes live pages every two
//! seconds; without it they refresh themselves. No CDN, no build step: the stylesheet and
//! script are compiled into the binary.
//!
//! Access: the Control API's client tokens. A browser signs in once on `/ui/login` (the token
//! goes into an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui`); scripts send
//! `Authorization: Bearer <token>`. `[console] enabled = false` turns it off.

mod auth;
mod backup_page;
mod cluster_page;
mod html;
mod job_view;
mod jobs_page;
mod overview;
mod progress;
mod state;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bk_proto::pb;
use bk_proto::pb::control_server::Control;
use tonic::Request;

use crate::auth::TokenSet;
use crate::coordinator::Coordinator;
use crate::core::source_health::source_health;
use crate::core::ClusterState;
use crate::service::control::ControlServiceImpl;
use crate::service::convert::job_header_to_pb;
use bk_proto::ids::JobId;
use state::Console;

/// The `/ui` routes; with `enabled` false, a 404 that says how to turn the console on.
pub fn router(
    coordinator: Arc<Coordinator>,
    tokens: TokenSet,
    enabled: bool,
    secure_cookie: bool,
) -> axum::Router {
    if !enabled {
        let off = || async {
            (StatusCode::NOT_FOUND, "the web console is off: set [console] enabled = true (or BK_CONSOLE=true) on this replica\n")
        };
        return axum::Router::new().route("/ui", get(off)).route("/ui/{*rest}", get(off));
    }
    let console = Arc::new(Console {
        control: ControlServiceImpl::new(coordinator.clone()),
        coordinator,
        tokens,
        secure_cookie,
    });
    axum::Router::new()
        .route("/ui", get(overview))
        .route("/ui/", get(overview))
        .route("/ui/jobs", get(jobs))
        .route("/ui/jobs/{id}", get(job))
        .route("/ui/backups/{id}", get(backup))
        .route("/ui/cluster", get(cluster))
        .route("/ui/logout", post(auth::logout))
        .layer(axum::middleware::from_fn_with_state(console.clone(), auth::require_token))
        // Signing in and the static files need no token.
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/assets/console.css", get(css))
        .route("/ui/assets/console.js", get(script))
        .layer(axum::middleware::map_response(auth::security_headers))
        .with_state(console)
}

/// An HTML page with status 200.
fn html_page(title: &str, current: &str, live: bool, body: &str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html::page(title, current, live, body))
        .into_response()
}

/// A page for a Control API error, with the matching HTTP status.
fn error_page(status: tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = format!("<p class=\"failure\">{}</p>", html::escape(status.message()));
    let mut response = html_page(code.canonical_reason().unwrap_or("Error"), "", false, &body);
    *response.status_mut() = code;
    response
}

async fn overview(State(console): State<Arc<Console>>) -> Response {
    let now_ms = crate::clock::now_ms();
    let coordinator = &console.coordinator;
    let (health, active, recent, workers) = coordinator.read(|state| {
        let health = source_health(state, &coordinator.objectives, now_ms);
        let (active, recent) = overview_jobs(state);
        (health, active, recent, state.workers.len())
    });
    let mut jobs = match running_jobs(&console, active).await {
        Ok(jobs) => jobs,
        Err(status) => return error_page(status),
    };
    jobs.extend(recent);
    let cluster =
        match console.control.cluster_status(Request::new(pb::ClusterStatusRequest {})).await {
            Ok(cluster) => cluster.into_inner(),
            Err(status) => return error_page(status),
        };
    let (live, body) = overview::Overview { health, jobs, cluster, workers, now_ms }.render();
    html_page("Overview", "Overview", live, &body)
}

/// The running jobs' ids, and the newest finished jobs as headers: the page refreshes every
/// two seconds and must not render every task of every recent job.
fn overview_jobs(state: &ClusterState) -> (Vec<JobId>, Vec<pb::Job>) {
    let active =
        state.jobs.values().filter(|job| !job.state().is_terminal()).map(|job| job.id).collect();
    let recent = state
        .jobs
        .values()
        .rev()
        .filter(|job| job.state().is_terminal())
        .take(overview::RECENT_JOBS)
        .map(job_header_to_pb)
        .collect();
    (active, recent)
}

/// The running jobs in full (their bars), newest first, through the Control API.
async fn running_jobs(
    console: &Console,
    active: Vec<JobId>,
) -> Result<Vec<pb::Job>, tonic::Status> {
    let mut jobs = Vec::new();
    for job_id in active.into_iter().rev() {
        let request = Request::new(pb::GetJobRequest { job_id: job_id.to_string(), local: true });
        match console.control.get_job(request).await {
            Ok(job) => jobs.push(job.into_inner()),
            // Ended and forgotten between the two reads: nothing to show.
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(status),
        }
    }
    Ok(jobs)
}

async fn jobs(State(console): State<Arc<Console>>) -> Response {
    let jobs: Vec<pb::Job> = console.coordinator.read(|state| {
        state.jobs.values().rev().take(jobs_page::LISTED_JOBS).map(job_header_to_pb).collect()
    });
    let (live, body) = jobs_page::jobs_list(&jobs, crate::clock::now_ms());
    html_page("Jobs", "Jobs", live, &body)
}

async fn job(State(console): State<Arc<Console>>, Path(job_id): Path<String>) -> Response {
    match console.control.get_job(Request::new(pb::GetJobRequest { job_id, local: true })).await {
        Ok(job) => {
            let (title, live, body) =
                jobs_page::job_page(&job.into_inner(), crate::clock::now_ms());
            html_page(&title, "Jobs", live, &body)
        }
        Err(status) => error_page(status),
    }
}

async fn backup(State(console): State<Arc<Console>>, Path(backup_id): Path<String>) -> Response {
    match console
        .control
        .get_backup(Request::new(pb::GetBackupRequest { backup_id, local: true }))
        .await
    {
        Ok(backup) => {
            let (title, body) =
                backup_page::backup_page(&backup.into_inner(), crate::clock::now_ms());
            html_page(&title, "", false, &body)
        }
        Err(status) => error_page(status),
    }
}

async fn cluster(State(console): State<Arc<Console>>) -> Response {
    let status = console.control.cluster_status(Request::new(pb::ClusterStatusRequest {}));
    let workers = console.control.list_workers(Request::new(pb::ListWorkersRequest {}));
    match (status.await, workers.await) {
        (Ok(status), Ok(workers)) => {
            let lease_timeout_ms =
                u64::try_from(console.coordinator.lease_timeout.as_millis()).unwrap_or(u64::MAX);
            let (live, body) = cluster_page::cluster_page(
                &status.into_inner(),
                &workers.into_inner().workers,
                lease_timeout_ms,
                crate::clock::now_ms(),
            );
            html_page("Cluster", "Cluster", live, &body)
        }
        (Err(status), _) | (_, Err(status)) => error_page(status),
    }
}

async fn css() -> Response {
    let headers = [(header::CONTENT_TYPE, "text/css; charset=utf-8")];
    (headers, include_str!("assets/console.css")).into_response()
}

async fn script() -> Response {
    let headers = [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")];
    (headers, include_str!("assets/console.js")).into_response()
}
