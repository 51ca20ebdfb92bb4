//! The HTTP endpoint: `/metrics` (OpenMetrics text), `/healthz` (the process is up) and
//! `/readyz` (connected to Kafka with a model loaded; 503 otherwise).

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::metrics::Metrics;

/// Serves the endpoint on `listener` until `shutdown` completes.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(metrics);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
}

async fn ready_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.get() == 1 {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: not connected to Kafka or no model loaded\n")
    }
}
