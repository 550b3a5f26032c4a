//! `GET /healthz`: is this server up, and can it reach tcpserver? Always JSON,
//! for load balancers and `run.sh`. `GET /metrics`: the Prometheus metrics,
//! to the addresses `--metrics-allow` permits.

use proto::Message;
use serde_json::json;

use super::unexpected_reply;
use crate::app::App;
use crate::request::Request;
use crate::response::Response;

/// The metrics ([`crate::metrics::render`]) for a permitted client, 403 for
/// any other.
pub fn metrics(app: &App, request: &Request) -> Response {
    if !app.config.metrics_allow.permits(request.peer) {
        return Response::new(403).body(
            "text/plain; charset=utf-8",
            b"metrics are not served to this address (--metrics-allow)\n".to_vec(),
        );
    }
    let text = crate::metrics::render(&app.config.backends);
    Response::new(200).body("text/plain; version=0.0.4; charset=utf-8", text.into_bytes())
}

/// 200 when tcpserver answers a Ping, 503 (or 504) when it does not.
pub fn healthz(app: &App, _request: &Request) -> Response {
    match app.call(Message::Ping) {
        Ok(Message::Pong) => Response::json_ok(200, &json!({ "backend": "up" })),
        Ok(_) => Response::json_problem(&unexpected_reply().problem()),
        Err(failure) => Response::json_problem(&failure.problem()),
    }
}
