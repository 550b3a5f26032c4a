//! What httpserver measures, served at `GET /metrics` in the Prometheus text
//! format (to the addresses `--metrics-allow` permits).
//!
//! Requests are counted by endpoint (the route that served them, from the
//! fixed list [`ENDPOINTS`], never the raw path a client chose) and status
//! (from [`STATUSES`], others as `other`), with a latency histogram per
//! endpoint; the RPC client counts its calls, the calls in flight, and its
//! refusals, timeouts and connections. Everything is a fixed array of atomics
//! ([`hostsupport::metrics`]): no lock on a request's path.

use hostsupport::metrics::{Counter, Gauge, Histogram, LATENCY_BOUNDS, family, sample};

use crate::balancer::MAX_BACKENDS;
use crate::router::{EXACT_ROUTES, PREFIX_ENDPOINTS};

/// The endpoints, as the router names them ([`crate::router::endpoint`]): the
/// path of every exact route ([`EXACT_ROUTES`]), then the routes served by
/// prefix ([`PREFIX_ENDPOINTS`]: `/qr/{key}` every phone page,
/// `/static/avatars/` every picture, `/static/` every other file), then
/// `unmatched`, any path no route serves, and `unread`, a request refused
/// before its head was whole. So the series are bounded by the router, never
/// by the paths clients send.
pub const ENDPOINTS: [&str; EXACT_ROUTES.len() + PREFIX_ENDPOINTS.len() + 2] = endpoints();

const fn endpoints() -> [&'static str; EXACT_ROUTES.len() + PREFIX_ENDPOINTS.len() + 2] {
    let mut out = [""; EXACT_ROUTES.len() + PREFIX_ENDPOINTS.len() + 2];
    let mut i = 0;
    while i < EXACT_ROUTES.len() {
        out[i] = EXACT_ROUTES[i].path;
        i += 1;
    }
    let mut j = 0;
    while j < PREFIX_ENDPOINTS.len() {
        out[i + j] = PREFIX_ENDPOINTS[j];
        j += 1;
    }
    out[i + j] = "unmatched";
    out[i + j + 1] = "unread";
    out
}

/// The statuses counted by name: every status the server sends (302 is the
/// log-in redirect of `/home` and the phone page, 410 an expired scan-to-log-in
/// code), and 499, recorded for a QR wait whose client left before its answer
/// and sent to nobody; any other is `other`.
pub const STATUSES: [u16; 26] = [
    200, 201, 204, 302, 303, 304, 400, 401, 403, 404, 405, 408, 409, 410, 413, 415, 429, 431, 499, 500, 501,
    502, 503, 504, 505, 507,
];

/// Per endpoint and status (the last column: `other`).
static REQUESTS: [[Counter; STATUSES.len() + 1]; ENDPOINTS.len()] =
    [const { [const { Counter::new() }; STATUSES.len() + 1] }; ENDPOINTS.len()];

/// Per endpoint: time from a whole head to the response written.
static LATENCY: [Histogram; ENDPOINTS.len()] = [const { Histogram::new(LATENCY_BOUNDS) }; ENDPOINTS.len()];

/// What the RPC client counts for one backend (one `--backend` address):
/// its calls and how they ended, its connections, and whether the balancer
/// takes it to be up.
#[derive(Debug)]
pub struct RpcMetrics {
    /// RPC calls made.
    pub calls: Counter,
    /// RPC calls waiting for their reply now.
    pub in_flight: Gauge,
    /// Calls refused at once because every connection carried its maximum.
    pub busy: Counter,
    /// Calls whose deadline passed.
    pub timeouts: Counter,
    /// Calls that failed otherwise (unreachable, handshake, broken, garbled).
    pub failures: Counter,
    /// Calls whose connection broke with them written, sent again because
    /// they are safe to resend (`proto::MessageType::is_safe_to_resend`).
    pub resent: Counter,
    /// Connections opened (the first of each slot, then reconnections).
    pub connects: Counter,
    /// Parked calls given up because their HTTP client went away, each
    /// cancelled on tcpserver (`QrCancel`).
    pub abandoned: Counter,
    /// 1 while the balancer sends calls to this backend, 0 while it is down
    /// and only probed.
    pub up: Gauge,
    /// Times the backend was found dead and taken out of the rotation.
    pub downs: Counter,
}

impl RpcMetrics {
    const fn new() -> RpcMetrics {
        RpcMetrics {
            calls: Counter::new(),
            in_flight: Gauge::new(),
            busy: Counter::new(),
            timeouts: Counter::new(),
            failures: Counter::new(),
            resent: Counter::new(),
            connects: Counter::new(),
            abandoned: Counter::new(),
            up: Gauge::new(),
            downs: Counter::new(),
        }
    }
}

/// One set per backend, by its position in `--backend`: the label values are
/// the configured addresses, so the series are bounded by
/// [`MAX_BACKENDS`], never by anything a peer sends.
pub static RPC: [RpcMetrics; MAX_BACKENDS] = [const { RpcMetrics::new() }; MAX_BACKENDS];

/// The index of an endpoint name in [`ENDPOINTS`] (`unmatched` if unknown).
fn endpoint_index(endpoint: &str) -> usize {
    ENDPOINTS.iter().position(|e| *e == endpoint).unwrap_or(ENDPOINTS.len() - 2)
}

/// Counts one answered request.
pub fn record(endpoint: &str, status: u16, seconds: f64) {
    let e = endpoint_index(endpoint);
    let s = STATUSES.iter().position(|&known| known == status).unwrap_or(STATUSES.len());
    REQUESTS[e][s].add(1);
    LATENCY[e].observe(seconds);
}

/// Every metric in the text exposition format (0.0.4); `backends` label the
/// RPC client's series (the `--backend` addresses, which the operator chose),
/// in their configured order.
pub fn render(backends: &[String]) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let name = "usermgmt_http_requests_total";
    family(&mut out, name, "counter", "HTTP requests answered, by endpoint and status.");
    for (endpoint, by_status) in ENDPOINTS.iter().zip(&REQUESTS) {
        for (i, counter) in by_status.iter().enumerate() {
            let count = counter.get();
            // Series appear once they have a count, as Prometheus clients do for labelled families.
            if count == 0 {
                continue;
            }
            let status = STATUSES.get(i).map_or("other".to_owned(), u16::to_string);
            sample(&mut out, name, &format!("endpoint=\"{endpoint}\",status=\"{status}\""), count);
        }
    }
    let name = "usermgmt_http_request_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from a request's whole head to its response written, by endpoint.",
    );
    for (endpoint, histogram) in ENDPOINTS.iter().zip(&LATENCY) {
        histogram.render(&mut out, name, &format!("endpoint=\"{endpoint}\""));
    }
    type Read = fn(&RpcMetrics) -> i64;
    let families: [(&str, &str, &str, Read); 10] = [
        ("usermgmt_rpc_calls_total", "counter", "RPC calls made to tcpserver.", |m| m.calls.get() as i64),
        ("usermgmt_rpc_calls_in_flight", "gauge", "RPC calls waiting for their reply.", |m| {
            m.in_flight.get()
        }),
        (
            "usermgmt_rpc_busy_total",
            "counter",
            "RPC calls refused at once: every connection at its maximum.",
            |m| m.busy.get() as i64,
        ),
        ("usermgmt_rpc_timeouts_total", "counter", "RPC calls whose deadline passed.", |m| {
            m.timeouts.get() as i64
        }),
        (
            "usermgmt_rpc_failures_total",
            "counter",
            "RPC calls failed otherwise: unreachable, refused handshake, broken connection, garbled reply.",
            |m| m.failures.get() as i64,
        ),
        (
            "usermgmt_rpc_resent_total",
            "counter",
            "RPC calls sent again after their connection to this tcpserver broke with them written (reads, QR waits, sign-ups, nickname changes).",
            |m| m.resent.get() as i64,
        ),
        (
            "usermgmt_rpc_connects_total",
            "counter",
            "Connections opened to tcpserver, first ones and reconnections.",
            |m| m.connects.get() as i64,
        ),
        (
            "usermgmt_rpc_abandoned_total",
            "counter",
            "Parked RPC calls (QR waits) given up because their HTTP client went away, and cancelled on tcpserver.",
            |m| m.abandoned.get() as i64,
        ),
        (
            "usermgmt_rpc_backend_up",
            "gauge",
            "1 while calls are sent to this tcpserver, 0 while it is down and only probed.",
            |m| m.up.get(),
        ),
        (
            "usermgmt_rpc_backend_downs_total",
            "counter",
            "Times this tcpserver was found dead and taken out of the rotation.",
            |m| m.downs.get() as i64,
        ),
    ];
    for (name, kind, help, read) in families {
        family(&mut out, name, kind, help);
        for (backend, metrics) in backends.iter().zip(&RPC) {
            sample(&mut out, name, &format!("backend=\"{}\"", backend.escape_default()), read(metrics));
        }
    }
    render_avatar_cache(&mut out);
    out
}

/// The picture cache's series ([`crate::avatar_cache`]).
fn render_avatar_cache(out: &mut String) {
    use crate::avatar_cache::{CACHE_BYTES, CACHE_ENTRIES, CACHE_HITS, CACHE_MISSES};
    for (name, kind, help, value) in [
        (
            "usermgmt_avatar_cache_bytes",
            "gauge",
            "Bytes the picture cache holds (pictures and a fixed allowance per entry), at most --avatar-cache-mib.",
            CACHE_BYTES.get(),
        ),
        ("usermgmt_avatar_cache_entries", "gauge", "Pictures the cache holds.", CACHE_ENTRIES.get()),
        (
            "usermgmt_avatar_cache_hits_total",
            "counter",
            "Pictures served from memory.",
            CACHE_HITS.get() as i64,
        ),
        (
            "usermgmt_avatar_cache_misses_total",
            "counter",
            "Pictures asked of tcpserver (found or not).",
            CACHE_MISSES.get() as i64,
        ),
    ] {
        family(out, name, kind, help);
        sample(out, name, "", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_known_endpoint_and_status_only() {
        record("/login", 200, 0.002);
        record("/no/such/path", 799, 0.002);
        let text = render(&["127.0.0.1:1099".to_owned()]);
        assert!(text.contains("usermgmt_http_requests_total{endpoint=\"/login\",status=\"200\"} "), "{text}");
        assert!(
            text.contains("usermgmt_http_requests_total{endpoint=\"unmatched\",status=\"other\"} "),
            "{text}"
        );
        assert!(!text.contains("/no/such/path"));
        assert!(text.contains("usermgmt_rpc_calls_in_flight{backend=\"127.0.0.1:1099\"} "));
    }

    #[test]
    fn account_security_and_qr_routes_have_labels_of_their_own() {
        for route in [
            "/sessions",
            "/sessions/revoke",
            "/sessions/revokeOthers",
            "/loginHistory",
            "/changePassword",
            "/deleteAccount",
            "/qr/new",
            "/qr/image",
            "/qr/wait",
            "/qr/approve",
            "/qr/deny",
        ] {
            assert_eq!(endpoint_index(route), ENDPOINTS.iter().position(|e| *e == route).unwrap(), "{route}");
            assert_ne!(ENDPOINTS[endpoint_index(route)], "unmatched", "{route}");
        }
        let key = "0123456789abcdef".repeat(4);
        record(crate::router::endpoint(&format!("/qr/{key}")), 410, 0.001);
        let text = render(&["127.0.0.1:1099".to_owned()]);
        assert!(
            text.contains("usermgmt_http_requests_total{endpoint=\"/qr/{key}\",status=\"410\"} "),
            "{text}"
        );
        assert!(!text.contains(&key), "a code's key never becomes a label");
    }

    #[test]
    fn every_route_is_a_distinct_label_and_the_two_pseudo_labels_come_last() {
        let mut seen = std::collections::HashSet::new();
        assert!(ENDPOINTS.iter().all(|e| seen.insert(*e)), "duplicate label");
        assert_eq!(ENDPOINTS[ENDPOINTS.len() - 2..], ["unmatched", "unread"]);
    }
}
