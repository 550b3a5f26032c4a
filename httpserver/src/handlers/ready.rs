//! `GET /readyz`: can this instance serve now? For a load balancer, which
//! sends traffic only to ready instances; `/healthz` stays the liveness check.
//!
//! Ready means: httpserver is not draining (SIGTERM received), a tcpserver
//! answers a `CheckReady` call, and the worker that ran it found MySQL and
//! Redis answering. 200 when all hold, 503 otherwise, with a JSON body that
//! says which part is not ready. With several `--backend`s the call goes
//! to one that is up (another if it fails), so the instance is ready while
//! at least one is; `data.backends` says which the balancer takes to be up.

use proto::{ErrorCode, Message};
use serde_json::json;

use crate::app::App;
use crate::request::Request;
use crate::response::Response;

/// 200 or 503 with `{"code","message","data":{"ready","draining","backend","mysql","redis","backends"}}`.
pub fn readyz(app: &App, _request: &Request) -> Response {
    let draining = app.is_draining();
    let (backend, mysql, redis, backend_code) = match app.call(Message::CheckReady) {
        Ok(Message::Readiness { mysql, redis }) => ("up", state(mysql), state(redis), None),
        Ok(_) => ("down", "unknown", "unknown", Some(117)),
        Err(failure) => ("down", "unknown", "unknown", Some(failure.problem().code)),
    };
    let mut not_ready: Vec<&str> = Vec::new();
    if draining {
        not_ready.push("draining");
    }
    if backend == "down" {
        not_ready.push("backend");
    }
    for (name, up) in [("mysql", mysql), ("redis", redis)] {
        if up == "down" {
            not_ready.push(name);
        }
    }
    let ready = not_ready.is_empty();
    let (status, code, message) = match (ready, backend_code) {
        (true, _) => (200, 0, "ready".to_owned()),
        (false, Some(code)) => (503, code, format!("not ready: {}", not_ready.join(", "))),
        (false, None) => (503, ErrorCode::Unavailable as u16, format!("not ready: {}", not_ready.join(", "))),
    };
    let body = json!({
        "code": code,
        "message": message,
        "data": {
            "ready": ready,
            "draining": draining,
            "backend": backend,
            "mysql": mysql,
            "redis": redis,
            "not_ready": not_ready,
            "backends": backends(app),
        },
    });
    let response = Response::new(status)
        .body("application/json", serde_json::to_vec(&body).unwrap_or_default())
        .header("Cache-Control", "no-store");
    if ready { response } else { response.header("Retry-After", "1") }
}

/// Each configured backend's address and `up` or `down`, as the balancer
/// sees it now (after the call above, which marks one it found dead).
fn backends(app: &App) -> serde_json::Map<String, serde_json::Value> {
    app.rpc.states().into_iter().map(|(addr, up)| (addr, state(up).into())).collect()
}

fn state(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}
