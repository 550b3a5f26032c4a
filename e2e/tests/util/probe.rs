//! A client for the fault tests that records what happened instead of panicking.
//!
//! [`super::Http`] treats a missing response as a test failure, which is right
//! for the other tests. Under a fault, a request may legitimately get no
//! response (a connection refused by a server that is shutting down), and the
//! tests need to know when each request started and how long it took. A
//! [`Probe`] returns an [`Outcome`] for every request: the reply or the reason
//! there was none, with its start time and latency. It never sends a request
//! twice.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{RESPONSE_TIMEOUT, Reply, parse_response_head};

/// What became of one request.
#[derive(Debug)]
pub struct Outcome {
    /// Which operation (`login`, `profile`, `signUp`, ...), for messages.
    pub op: &'static str,
    /// When the request was sent.
    pub started: Instant,
    /// How long until the whole response (or the failure) arrived.
    pub latency: Duration,
    /// The response, or why there was none.
    pub reply: Result<Reply, String>,
}

impl Outcome {
    /// The HTTP status, if a response came.
    pub fn status(&self) -> Option<u16> {
        self.reply.as_ref().ok().map(|r| r.status)
    }

    /// Whether the request succeeded (2xx).
    pub fn ok(&self) -> bool {
        self.status().is_some_and(|s| (200..300).contains(&s))
    }

    /// When the response (or the failure) arrived.
    pub fn ended(&self) -> Instant {
        self.started + self.latency
    }

    /// The JSON body's `code`, if the response has one.
    pub fn code(&self) -> Option<i64> {
        let reply = self.reply.as_ref().ok()?;
        serde_json::from_slice::<Value>(&reply.body).ok()?["code"].as_i64()
    }

    /// Whether this is the documented answer to a missing or overloaded
    /// dependency: 503, a JSON error body, and `Retry-After`.
    pub fn is_retryable_503(&self) -> bool {
        self.reply.as_ref().is_ok_and(|r| {
            r.status == 503 && r.header("retry-after").is_some() && self.code().is_some_and(|c| c > 0)
        })
    }

    /// One line for assertion messages.
    pub fn describe(&self) -> String {
        let what = match &self.reply {
            Ok(r) => format!("{} {}", r.status, r.text()),
            Err(e) => format!("no response: {e}"),
        };
        format!("{} after {:?}: {what}", self.op, self.latency)
    }
}

/// A keep-alive HTTP/1.1 connection that records outcomes.
pub struct Probe {
    addr: SocketAddr,
    source: Option<IpAddr>,
    stream: Option<TcpStream>,
}

impl Probe {
    /// A client of the server at `addr`.
    pub fn new(addr: SocketAddr) -> Probe {
        Probe { addr, source: None, stream: None }
    }

    /// A client whose connections come from `source` (another loopback address),
    /// so that per-address limits such as the sign-up throttle count it apart.
    pub fn from_source(addr: SocketAddr, source: IpAddr) -> Probe {
        Probe { addr, source: Some(source), stream: None }
    }

    /// Sends one request and reads its response.
    pub fn call(
        &mut self,
        op: &'static str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Outcome {
        let mut bytes = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr).into_bytes();
        for (name, value) in headers {
            bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if method == "POST" {
            bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        let started = Instant::now();
        let reply = self.exchange(&bytes);
        let latency = started.elapsed();
        match &reply {
            Ok(r) if !r.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) => {}
            _ => self.stream = None,
        }
        Outcome { op, started, latency, reply }
    }

    fn exchange(&mut self, bytes: &[u8]) -> Result<Reply, String> {
        if self.stream.as_ref().is_some_and(closed_by_peer) {
            // Closed while idle: nothing was sent on it, so a new connection is safe.
            self.stream = None;
        }
        if self.stream.is_none() {
            self.stream = Some(self.connect().map_err(|e| format!("connect: {e}"))?);
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(bytes).map_err(|e| format!("send: {e}"))?;
        read_response(stream)
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let stream = match self.source {
            None => TcpStream::connect(self.addr)?,
            Some(source) => {
                let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
                socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
                socket.connect(&SockAddr::from(self.addr))?;
                socket.into()
            }
        };
        stream.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// `POST /login` as an API client.
    pub fn login(&mut self, username: &str, password: &str) -> Outcome {
        let body = json(&[("username", username), ("password", password)]);
        self.call("login", "POST", "/login", &api_headers(), &body)
    }

    /// `POST /signUp` as an API client.
    pub fn sign_up(&mut self, username: &str, password: &str) -> Outcome {
        let body = json(&[("username", username), ("password", password)]);
        self.call("signUp", "POST", "/signUp", &api_headers(), &body)
    }

    /// `GET /profile` with a bearer token.
    pub fn profile(&mut self, token: &str) -> Outcome {
        let auth = format!("Bearer {token}");
        self.call(
            "profile",
            "GET",
            "/profile",
            &[("Accept", "application/json"), ("Authorization", &auth)],
            b"",
        )
    }

    /// `POST /updateNickName` with a bearer token.
    pub fn nickname(&mut self, token: &str, nickname: &str) -> Outcome {
        let auth = format!("Bearer {token}");
        let mut headers = api_headers();
        headers.push(("Authorization", &auth));
        self.call("updateNickName", "POST", "/updateNickName", &headers, &json(&[("nickname", nickname)]))
    }
}

/// The token of a successful login outcome.
pub fn token_of(outcome: &Outcome) -> Option<String> {
    let reply = outcome.reply.as_ref().ok().filter(|r| r.status == 200)?;
    let body: Value = serde_json::from_slice(&reply.body).ok()?;
    body["data"]["token"].as_str().map(str::to_owned)
}

/// The `n`th of many distinct loopback source addresses (127.1.0.1 and up).
pub fn loopback_source(n: u32) -> IpAddr {
    let n = n % (250 * 250);
    IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8))
}

fn api_headers() -> Vec<(&'static str, &'static str)> {
    vec![("Content-Type", "application/json"), ("Accept", "application/json")]
}

fn json(fields: &[(&str, &str)]) -> Vec<u8> {
    let object: serde_json::Map<String, Value> =
        fields.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
    serde_json::to_vec(&object).expect("JSON")
}

/// Whether the peer closed an idle connection (EOF or reset waiting to be read).
fn closed_by_peer(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let closed = !matches!(stream.peek(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_err() || closed
}

/// Reads one response (every response of the servers has a Content-Length).
fn read_response(stream: &mut TcpStream) -> Result<Reply, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head) = parse_response_head(&buf)? {
            let (head_len, status, headers) = (head.len, head.status, head.headers);
            let length = head.content_length.ok_or("no Content-Length")?;
            while buf.len() < head_len + length {
                let n = stream.read(&mut chunk).map_err(|e| format!("read body: {e}"))?;
                if n == 0 {
                    return Err("closed in the body".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head_len..head_len + length].to_vec();
            return Ok(Reply { status, headers, body });
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {} bytes of response", buf.len()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
