//! `GET /healthz`: is this server up, and can it reach tcpserver? Always JSON,
//! for load balancers and `run.sh`.

use proto::Message;
use serde_json::json;

use super::unexpected_reply;
use crate::app::App;
use crate::request::Request;
use crate::response::Response;

/// 200 when tcpserver answers a Ping, 503 (or 504) when it does not.
pub fn healthz(app: &App, _request: &Request) -> Response {
    match app.call(Message::Ping) {
        Ok(Message::Pong) => Response::json_ok(200, &json!({ "backend": "up" })),
        Ok(_) => Response::json_problem(&unexpected_reply().problem()),
        Err(failure) => Response::json_problem(&failure.problem()),
    }
}
