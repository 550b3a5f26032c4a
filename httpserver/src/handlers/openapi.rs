//! `GET /openapi.json`: the OpenAPI 3.1 description of this API, kept in the
//! repository as `httpserver/openapi.json` and built into the binary, so the
//! description served is always the one of the code that serves it.
//! `e2e/tests/openapi.rs` checks the server against it with schemathesis.

use crate::app::App;
use crate::request::Request;
use crate::response::Response;

/// The description, as committed.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// The description as JSON.
pub fn document(_app: &App, _request: &Request) -> Response {
    Response::new(200)
        .body("application/json", DOCUMENT.as_bytes().to_vec())
        .header("Cache-Control", "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let prefixes = ["/static/", "/static/avatars/"];
        for path in crate::metrics::ENDPOINTS.iter().filter(|e| e.starts_with('/') && !prefixes.contains(*e))
        {
            assert!(doc["paths"][*path].is_object(), "{path} is not described");
        }
        assert!(doc["paths"]["/static/{file}"].is_object());
        assert!(doc["paths"]["/static/avatars/{name}"].is_object());
    }
}
