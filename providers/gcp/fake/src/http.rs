//! The HTTP front: one fallback handler; `/_fake/…` goes to the admin side, everything else to
//! the Compute API. Every answer is JSON.

use crate::store::Shared;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::Value;

#[derive(Clone)]
pub struct App {
    pub state: Shared,
}

pub fn router(app: App) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(app)
}

async fn handle(State(app): State<App>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let (status, value) = if path == "/_fake" || path.starts_with("/_fake/") {
        crate::admin::handle(&app.state, method.as_str(), path, query, &body)
    } else {
        if let Ok(shape) = crate::route::shape(path) {
            let held = crate::api::lock(&app.state).faults.delay_for(method.as_str(), &shape.rel);
            if let Some(by) = held {
                tokio::time::sleep(by).await;
            }
        }
        crate::api::handle(&app.state, method.as_str(), path, query, &body)
    };
    json_response(status, &value)
}

fn json_response(status: u16, v: &Value) -> Response {
    let bytes = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    r
}
