//! `/api/health`: 200 while the library can be read, 503 while its database does not answer or
//! its data folder is gone, so that a watchdog or a load balancer sees what the API's own
//! routes would only show as 500s after the connection pool's timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::AppState;

/// How long a check may take before the library counts as not answering.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Health {
    /// A check still running (a frozen database holds its thread): later checks do not start
    /// another, which would hold one more thread each time a watchdog asks.
    checking: AtomicBool,
    /// The last check failed: its reason is logged once, when that changes, not at every check.
    failing: AtomicBool,
}

pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let health = &state.health;
    let reason = if health.checking.swap(true, Ordering::SeqCst) {
        Some(format!("the last check has not ended in {} s", ANSWER_WITHIN.as_secs()))
    } else {
        let checked = state.clone();
        let check = tokio::task::spawn_blocking(move || {
            let reachable = super::routes::engine(&checked).library().check_reachable();
            checked.health.checking.store(false, Ordering::SeqCst);
            reachable
        });
        match tokio::time::timeout(ANSWER_WITHIN, check).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(e.to_string()),
            Ok(Err(panicked)) => {
                health.checking.store(false, Ordering::SeqCst);
                Some(panicked.to_string())
            }
            Err(_) => Some(format!("no answer in {} s", ANSWER_WITHIN.as_secs())),
        }
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
