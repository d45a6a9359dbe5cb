//! `/api/health`: 200 while the library can be read, 503 while its database does not answer or
//! its data folder is gone, so that a watchdog or a load balancer sees what the API's own
//! routes would only show as 500s after the connection pool's timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::watch;

use super::error::ApiError;
use super::AppState;

/// How long a check may take before the library counts as not answering.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// What a check found: nothing wrong, or why the library cannot be read.
type Outcome = std::result::Result<(), String>;

#[derive(Default)]
pub struct Health {
    /// The check running now, whose outcome every request that comes meanwhile waits for: one
    /// check at a time (a frozen database holds its thread), and requests that came together
    /// all get its answer (they used to get 503 while another's check ran).
    running: Mutex<Option<watch::Receiver<Option<Outcome>>>>,
    /// The last check failed: its reason is logged once, when that changes, not at every check.
    failing: AtomicBool,
}

/// Takes the running check off [`Health`] when it ends, even by a panic.
struct CheckEnds(Arc<AppState>);

impl Drop for CheckEnds {
    fn drop(&mut self) {
        *self.0.health.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let health = &state.health;
    let mut outcome = {
        let mut running = health.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*running {
            Some(outcome) => outcome.clone(),
            None => {
                let (tell, outcome) = watch::channel(None);
                *running = Some(outcome.clone());
                let ends = CheckEnds(state.clone());
                tokio::task::spawn_blocking(move || {
                    let found = super::routes::engine(&ends.0).library().check_reachable().map_err(|e| e.to_string());
                    drop(ends);
                    let _ = tell.send(Some(found));
                });
                outcome
            }
        }
    };
    let reason = match tokio::time::timeout(ANSWER_WITHIN, outcome.wait_for(Option::is_some)).await {
        Ok(Ok(found)) => found.clone().and_then(Result::err),
        Ok(Err(_)) => Some("the check ended without an answer (it panicked)".to_string()),
        Err(_) => Some(format!("no answer in {} s", ANSWER_WITHIN.as_secs())),
    };
    match reason {
        None => {
            if health.failing.swap(false, Ordering::SeqCst) {
                tracing::info!("health: the library can be read again");
            }
            Json(serde_json::json!({"status": "ok"})).into_response()
        }
        Some(reason) => {
            if !health.failing.swap(true, Ordering::SeqCst) {
                tracing::error!("health: the library cannot be read: {reason}");
            }
            // Anyone may ask (no sign-in): where the library lives and why it fails stay in the log.
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "library_unreachable",
                message: "the library cannot be read now (its database does not answer, or its data folder is \
                          gone); the server's log says why"
                    .into(),
            }
            .into_response()
        }
    }
}
