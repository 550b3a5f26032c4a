//! A tiny W3C WebDriver client for the browser test: chromedriver driving Debian's
//! headless Chromium, spoken to with `std::net::TcpStream` and `serde_json`.
//!
//! Only the handful of commands the test needs: navigate, find, type, click,
//! read text, run a script, take a screenshot.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's chromedriver (package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key of an element reference in W3C WebDriver replies.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long any one WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A chromedriver process with one browser session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile_dir: PathBuf,
}

/// A found element.
#[derive(Debug, Clone)]
pub struct Element(String);

/// What kind of device a browser plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// A desktop window (Chromium's own User-Agent).
    Desktop,
    /// A phone: Chromium's mobile emulation, a phone's viewport and User-Agent.
    Phone,
}

/// The User-Agent of [`Device::Phone`].
pub const PHONE_USER_AGENT: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
                                    (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile in `scratch`.
    pub fn start(scratch: &Path) -> Browser {
        Browser::start_as(scratch, "chromium", Device::Desktop)
    }

    /// As [`Browser::start`], with files named after `name`: a second browser
    /// beside the first has its own profile (cookies and all), like a second device.
    pub fn start_named(scratch: &Path, name: &str) -> Browser {
        Browser::start_as(scratch, name, Device::Desktop)
    }

    /// Starts another browser of its own (its own profile, so its own cookies:
    /// a separate person or device) named `name` in `scratch`, as `device`.
    pub fn start_as(scratch: &Path, name: &str, device: Device) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: run e2e/tests/browser/setup.sh (./test.sh does)"
            );
        }
        let log_path = scratch.join(format!("{name}-chromedriver.log"));
        let (driver, addr) = start_driver(&log_path);
        let profile_dir = scratch.join(format!("{name}-profile"));
        fs::create_dir_all(&profile_dir).expect("profile dir");
        let mut browser = Browser { driver, addr, session: String::new(), profile_dir };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=760,900",
            &format!("--user-data-dir={}", browser.profile_dir.display()),
        ];
        let mut options = json!({ "binary": CHROMIUM, "args": args });
        if device == Device::Phone {
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": 412, "height": 915, "pixelRatio": 2.0, "touch": true, "mobile": true },
                "userAgent": PHONE_USER_AGENT,
            });
        }
        let capabilities = json!({
            "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": options } }
        });
        let created = browser.command("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"].as_str().expect("sessionId").to_owned();
        browser
    }

    /// Sends one command; returns its `value`, panicking on a WebDriver error.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = http(self.addr, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if reply["value"].get("error").is_some() {
            panic!("{method} {path} failed: {}", reply["value"]);
        }
        reply["value"].clone()
    }

    fn session_command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Loads `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.session_command("POST", "/url", Some(json!({ "url": url })));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.session_command("GET", "/url", None).as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the current URL satisfies `done` (a click that submits a form
    /// may return before the next page is there); returns it, or panics.
    pub fn wait_for_url(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let mut url = String::new();
        for _ in 0..200 {
            url = self.url();
            if done(&url) && self.execute("return document.readyState;", json!([])) == "complete" {
                return url;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; the URL is {url}");
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> Element {
        let found =
            self.session_command("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        Element(found[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("no element id for {css}")).to_owned())
    }

    /// Whether any element matches.
    pub fn exists(&self, css: &str) -> bool {
        let found =
            self.session_command("POST", "/elements", Some(json!({ "using": "css selector", "value": css })));
        found.as_array().is_some_and(|a| !a.is_empty())
    }

    /// Types `text` into an element (for a file input: a file path).
    pub fn type_into(&self, element: &Element, text: &str) {
        self.session_command("POST", &format!("/element/{}/value", element.0), Some(json!({ "text": text })));
    }

    /// Sets an input's value by script, as a paste would. ChromeDriver cannot type
    /// characters outside the Basic Multilingual Plane (emoji) with key events.
    pub fn set_value(&self, element: &Element, value: &str) {
        let reference = json!({ ELEMENT_KEY: element.0 });
        self.execute("arguments[0].value = arguments[1];", json!([reference, value]));
    }

    /// Clears an input.
    pub fn clear(&self, element: &Element) {
        self.session_command("POST", &format!("/element/{}/clear", element.0), Some(json!({})));
    }

    /// Clicks an element (and waits for any navigation it starts).
    pub fn click(&self, element: &Element) {
        self.session_command("POST", &format!("/element/{}/click", element.0), Some(json!({})));
    }

    /// The rendered text of an element.
    pub fn text(&self, element: &Element) -> String {
        self.session_command("GET", &format!("/element/{}/text", element.0), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body) with `args`; returns its result.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.session_command("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Runs `script` until it returns something truthy, or panics after a while.
    pub fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        for _ in 0..100 {
            let value = self.execute(script, args.clone());
            if !(value.is_null() || value == false || value == 0) {
                return value;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating its directory.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.session_command("GET", "/screenshot", None);
        let png = base64_decode(encoded.as_str().expect("base64 screenshot")).expect("valid base64");
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("screenshot directory");
        }
        fs::write(path, png).expect("write screenshot");
    }
}

/// Starts a chromedriver of this browser's own on a free port, once it is
/// ready. The port is found free by binding it and letting it go, so another
/// test's driver starting at the same moment can take it first: the one that
/// loses exits ("port not available") while the other answers `/status` on
/// that port, and the test would drive, and at its end kill, another test's
/// browser. So a driver counts as started only once its own log says it
/// bound the port; one that exits is replaced on a fresh port.
fn start_driver(log_path: &Path) -> (Child, SocketAddr) {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let log = fs::File::create(log_path).expect("chromedriver log");
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn chromedriver");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if wait_until_ready(&mut driver, addr, log_path) {
            return (driver, addr);
        }
    }
    panic!("chromedriver found no free port in five tries (its log: {})", log_path.display());
}

/// Waits until `driver` has bound `addr` itself and answers `/status` as
/// ready: `true`; `false` if it exited first (its port was taken).
fn wait_until_ready(driver: &mut Child, addr: SocketAddr, log_path: &Path) -> bool {
    let started = format!("started successfully on port {}", addr.port());
    for _ in 0..200 {
        if let Ok(Some(_)) = driver.try_wait() {
            return false;
        }
        let bound = fs::read_to_string(log_path).is_ok_and(|log| log.contains(&started));
        if bound && http(addr, "GET", "/status", None).is_ok_and(|reply| reply["value"]["ready"] == true) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("chromedriver did not become ready (its log: {})", log_path.display());
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(self.addr, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = fs::remove_dir_all(&self.profile_dir);
    }
}

/// One HTTP/1.1 exchange with chromedriver. It announces `Connection: close`
/// but keeps the socket open, so the body is read by its length, not to EOF.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let mut read_more = |raw: &mut Vec<u8>| -> Result<(), String> {
        match stream.read(&mut chunk) {
            Ok(0) => Err("chromedriver closed the connection early".to_owned()),
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    };
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        read_more(&mut raw)?;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let payload = match length {
        Some(length) => {
            while raw.len() < split + 4 + length {
                read_more(&mut raw)?;
            }
            raw[split + 4..split + 4 + length].to_vec()
        }
        None => loop {
            if let Some(body) = dechunk(&raw[split + 4..]) {
                break body;
            }
            read_more(&mut raw)?;
        },
    };
    serde_json::from_slice(&payload).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&payload)))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Standard base64 (with padding), as WebDriver returns screenshots.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for quad in clean.chunks(4) {
        let digits: Vec<u32> =
            quad.iter().take_while(|&&b| b != b'=').map(|&b| value(b)).collect::<Option<_>>()?;
        let n = digits.iter().fold(0u32, |n, d| n << 6 | d) << (6 * (4 - digits.len()));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..digits.len()]);
    }
    Some(out)
}
