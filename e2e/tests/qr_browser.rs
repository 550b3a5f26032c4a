//! Scan-to-log-in in real headless Chromium: a desktop browser and a phone
//! (mobile viewport and User-Agent), each with its own profile. The QR code
//! is read from a screenshot of the desktop's page by `zbarimg` (Debian's
//! `zbar-tools`), never from the page's markup; the phone, logged in, opens
//! what it decoded, sees the desktop's browser and address, and approves;
//! the desktop, without a reload, is then at `/home` as that user. Also:
//! Deny leaves the desktop on `/` with a message and a fresh code, a second
//! approval is refused, a third browser with the key but not the binding
//! cookie gets no session, and a code past its lifetime is refused while the
//! desktop shows a fresh one.

mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use util::webdriver::{Browser, Device};
use util::{Options, Stack, workspace_root};

const PASSWORD: &str = "correct horse battery";

/// Decodes the QR code in a screenshot of `browser`'s page with zbarimg.
fn scan_screen(browser: &Browser, dir: &Path, name: &str) -> String {
    browser.wait_for(
        "the QR image to load",
        "const img = document.getElementById('qr-image'); \
         if (!img || !img.complete || img.naturalWidth === 0) return false; \
         img.scrollIntoView({block: 'center'}); return true;",
        json!([]),
    );
    let shot = dir.join(format!("{name}.png"));
    browser.screenshot(&shot);
    let out = Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
        .arg(&shot)
        .output()
        .expect("run zbarimg (e2e/tests/browser/setup.sh installs zbar-tools)");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(out.status.success() && !text.is_empty(), "no QR code found in {}: {text}", shot.display());
    text
}

/// The text of the element with `id` once the page that has it is shown (a
/// click that posts a form may return before the next page is there).
fn text_of(browser: &Browser, id: &str) -> String {
    let script = "const e = document.getElementById(arguments[0]); return e ? e.textContent : false;";
    browser.wait_for(&format!("#{id}"), script, json!([id])).as_str().unwrap_or_default().trim().to_owned()
}

fn data_key(browser: &Browser) -> String {
    browser
        .execute("return document.getElementById('qr').getAttribute('data-key');", json!([]))
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn log_in(browser: &Browser, stack: &Stack, username: &str) {
    browser.goto(&stack.url("/"));
    browser.type_into(&browser.find("#username"), username);
    browser.type_into(&browser.find("#password"), PASSWORD);
    browser.click(&browser.find("#login-form button[type=submit]"));
    browser.wait_for_url("home after log-in", |url| url.ends_with("/home"));
}

#[test]
fn a_phone_approves_the_code_it_scanned_from_the_desktop_screen_and_the_desktop_is_logged_in() {
    let stack = Stack::start();
    let username = stack.sign_up("qrbrowser", PASSWORD);
    let desktop = Browser::start_as(&stack.dir, "desktop", Device::Desktop);
    let phone = Browser::start_as(&stack.dir, "phone", Device::Phone);
    let artifacts = workspace_root().join("target/test-artifacts");

    // The phone is logged in already.
    log_in(&phone, &stack, &username);

    // The desktop shows a code; the phone reads it off the screen.
    desktop.goto(&stack.url("/"));
    let url = scan_screen(&desktop, &artifacts, "qr-login");
    let key = data_key(&desktop);
    assert_eq!(url, stack.url(&format!("/qr/{key}")), "the code encodes this site's /qr/<key>");

    // The phone sees what it is about to approve: the desktop's browser and address.
    phone.goto(&url);
    assert_eq!(phone.text(&phone.find("#qr-browser")), "Chrome");
    assert_eq!(phone.text(&phone.find("#qr-os")), "Linux");
    assert_eq!(phone.text(&phone.find("#qr-ip")), "127.0.0.1");
    assert!(phone.text(&phone.find("#qr-created")).ends_with("UTC"));
    assert!(phone.text(&phone.find("#qr-warning")).contains("Approve only a code you are looking at"));

    // The desktop says it was scanned, and by whom.
    let scanned = desktop.wait_for(
        "the desktop to show the scan",
        "const e = document.getElementById('qr-scanner'); return !e.hidden && e.textContent;",
        json!([]),
    );
    assert!(scanned.as_str().is_some_and(|t| t.contains(&username)), "{scanned}");

    // Approve: within a moment, and without a reload, the desktop is home as that user.
    let approved_at = Instant::now();
    phone.click(&phone.find("#qr-approve-form button[type=submit]"));
    assert_eq!(text_of(&phone, "qr-result-heading"), "Approved");
    desktop.wait_for_url("the desktop at home", |u| u.ends_with("/home"));
    let delay = approved_at.elapsed();
    println!("phone's approval to the desktop at /home: {delay:?}");
    assert!(delay < Duration::from_secs(5), "the desktop got there after {delay:?}");
    assert_eq!(desktop.text(&desktop.find("#username")), username);

    // A third browser that has the key but not the binding cookie gets no session.
    let third = Browser::start_as(&stack.dir, "third", Device::Desktop);
    third.goto(&stack.url(&format!("/qr/wait?key={key}")));
    assert!(!third.url().ends_with("/home"), "{}", third.url());
    third.goto(&stack.url("/home"));
    assert_eq!(third.url(), stack.url("/"), "no session: /home sends it to log in");

    // A second approval of the same code is refused.
    phone.goto(&url);
    assert!(text_of(&phone, "qr-result").contains("already been used"));

    // Deny: the desktop (logged out, showing a new code) stays on / with a message.
    desktop.click(&desktop.find("#logout-form button[type=submit]"));
    desktop.wait_for_url("the log-in page", |u| u == stack.url("/"));
    let url = scan_screen(&desktop, &artifacts, "qr-deny");
    let denied_key = data_key(&desktop);
    phone.goto(&url);
    phone.click(&phone.find("#qr-deny-form button[type=submit]"));
    assert_eq!(text_of(&phone, "qr-result-heading"), "Denied");
    desktop.wait_for(
        "the desktop to say it was denied",
        "return document.getElementById('qr-status').textContent.includes('denied on the phone');",
        json!([]),
    );
    assert_eq!(desktop.url(), stack.url("/"));
    desktop.wait_for(
        "a fresh code after the denial",
        "return document.getElementById('qr').getAttribute('data-key') !== arguments[0];",
        json!([denied_key]),
    );
    let fresh = scan_screen(&desktop, &artifacts, "qr-fresh");
    assert_ne!(fresh, url, "the image shows the fresh code");
}

#[test]
fn a_code_past_its_lifetime_is_refused_and_the_desktop_shows_a_fresh_one() {
    let stack = Stack::start_with(Options::default().back("--qr-ttl-secs", 3));
    let username = stack.sign_up("qrexpiry", PASSWORD);
    let desktop = Browser::start_as(&stack.dir, "desktop", Device::Desktop);
    let phone = Browser::start_as(&stack.dir, "phone", Device::Phone);
    log_in(&phone, &stack, &username);
    desktop.goto(&stack.url("/"));
    let artifacts = workspace_root().join("target/test-artifacts");
    let url = scan_screen(&desktop, &artifacts, "qr-expiring");
    let old_key = data_key(&desktop);
    let started = Instant::now();
    // The wait is answered `expired` at the code's end; the page fetches a new one.
    for _ in 0..10 {
        let key = data_key(&desktop);
        if key != old_key {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_ne!(
        data_key(&desktop),
        old_key,
        "no fresh code {:?} after the old one expired",
        started.elapsed()
    );
    let message = desktop.execute("return document.getElementById('qr-status').textContent;", json!([]));
    assert!(message.as_str().is_some_and(|m| m.contains("expired")), "{message}");
    let fresh = scan_screen(&desktop, &artifacts, "qr-renewed");
    assert_ne!(fresh, url);
    // The old code, opened on the phone, is refused.
    phone.goto(&url);
    assert!(text_of(&phone, "qr-result").contains("expired"), "{}", phone.url());
}
