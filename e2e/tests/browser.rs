//! The pages in a real browser: headless Chromium driven over WebDriver signs up,
//! logs in, changes the nickname to Chinese with an emoji, uploads a picture and
//! sees it rendered, logs out, and meets a wrong-password error. A screenshot of
//! the home page is saved to `target/test-artifacts/home.png` for people to look at.
//! Two browsers (two profiles: two devices) log in to one account; one sees
//! both in its device list, signs the other out (whose next click lands on the
//! log-in page), and changes the password, which the other then logs in with.

mod util;

use serde_json::json;
use util::webdriver::Browser;
use util::{Stack, png, workspace_root};

const PASSWORD: &str = "correct horse battery";
const NICKNAME: &str = "李小龍 🐉";
const PICTURE_SIZE: u32 = 96;

#[test]
fn a_person_signs_up_edits_the_profile_and_logs_out_in_chromium() {
    let stack = Stack::start();
    let browser = Browser::start(&stack.dir);
    let username = stack.username("browser");

    // Sign up.
    browser.goto(&stack.url("/signup"));
    browser.type_into(&browser.find("#username"), &username);
    browser.type_into(&browser.find("#password"), PASSWORD);
    browser.click(&browser.find("#signup-form button[type=submit]"));
    browser.wait_for_url("the log-in page after sign-up", |url| url.contains("/?created="));
    assert!(browser.text(&browser.find(".alert.notice")).contains("Your account is ready"));

    // Log in (the username is already filled in).
    browser.type_into(&browser.find("#password"), PASSWORD);
    browser.click(&browser.find("#login-form button[type=submit]"));
    let home = stack.url("/home");
    browser.wait_for_url("home after log-in", |url| url == home);
    assert_eq!(browser.text(&browser.find("#username")), username);
    assert!(browser.exists(".avatar.placeholder"), "no picture yet");

    // Change the nickname (filled by script: ChromeDriver cannot type the dragon).
    let field = browser.find("#nickname-form input[name=nickname]");
    browser.clear(&field);
    browser.set_value(&field, NICKNAME);
    browser.click(&browser.find("#nickname-form button[type=submit]"));
    let saved = stack.url("/home?saved=nickname");
    browser.wait_for_url("home after the nickname change", |url| url == saved);
    assert_eq!(browser.text(&browser.find("#nickname")), NICKNAME);
    assert!(browser.text(&browser.find(".alert.notice")).contains("nickname is saved"));

    // Upload a picture and see it rendered.
    let picture = stack.dir.join("me.png");
    std::fs::write(&picture, png(PICTURE_SIZE)).expect("write the picture");
    browser.type_into(&browser.find("#picture-form input[type=file]"), &picture.display().to_string());
    browser.click(&browser.find("#picture-form button[type=submit]"));
    let saved = stack.url("/home?saved=picture");
    browser.wait_for_url("home after the upload", |url| url == saved);
    let width = browser.wait_for(
        "the picture to load",
        "const img = document.getElementById('avatar'); \
         return img && img.tagName === 'IMG' && img.complete ? img.naturalWidth : 0;",
        json!([]),
    );
    assert_eq!(width, PICTURE_SIZE, "the uploaded picture is displayed at its real size");
    let source = browser.execute("return document.getElementById('avatar').getAttribute('src');", json!([]));
    assert!(source.as_str().is_some_and(|s| s.starts_with("/static/avatars/")), "{source}");

    let shot = workspace_root().join("target/test-artifacts/home.png");
    browser.screenshot(&shot);
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false), "screenshot saved");

    // Log out: back on the log-in page, and home is closed.
    browser.click(&browser.find("#logout-form button[type=submit]"));
    let login = stack.url("/");
    browser.wait_for_url("the log-in page after log-out", |url| url == login);
    assert!(browser.exists("#login-form"));
    browser.goto(&home);
    assert_eq!(browser.url(), login, "without a session /home sends the browser to log in");

    // A wrong password shows an error on the log-in page.
    browser.type_into(&browser.find("#username"), &username);
    browser.type_into(&browser.find("#password"), "definitely wrong");
    browser.click(&browser.find("#login-form button[type=submit]"));
    browser.wait_for("the error", "return document.querySelector('.alert.error') !== null;", json!([]));
    assert!(browser.exists("#login-form"));
    assert_eq!(browser.text(&browser.find(".alert.error")), "Wrong username or password.");
    browser.screenshot(&workspace_root().join("target/test-artifacts/login-error.png"));
}

#[test]
fn a_person_sees_two_devices_signs_the_other_out_and_changes_the_password_in_chromium() {
    let stack = Stack::start();
    let username = stack.sign_up("devices", PASSWORD);
    let laptop = Browser::start_named(&stack.dir, "laptop");
    let phone = Browser::start_named(&stack.dir, "phone");
    let home = stack.url("/home");
    let login = stack.url("/");
    let log_in = |browser: &Browser, password: &str| {
        browser.goto(&login);
        browser.type_into(&browser.find("#username"), &username);
        browser.type_into(&browser.find("#password"), password);
        browser.click(&browser.find("#login-form button[type=submit]"));
        browser.wait_for_url("home after log-in", |url| url == home);
    };
    log_in(&laptop, PASSWORD);
    log_in(&phone, PASSWORD);

    // The laptop sees both devices, itself marked.
    laptop.goto(&home);
    let rows = laptop.execute("return document.querySelectorAll('#devices li.device').length;", json!([]));
    assert_eq!(rows, 2, "two devices listed");
    assert!(laptop.text(&laptop.find("#devices")).contains("This device"));
    assert!(laptop.text(&laptop.find("#devices")).contains("Chrome on Linux"));
    laptop.execute("document.getElementById('your-devices').scrollIntoView();", json!([]));
    laptop.screenshot(&workspace_root().join("target/test-artifacts/devices.png"));

    // It signs the phone out.
    laptop.click(&laptop.find("#devices li.device form button[type=submit]"));
    let revoked = stack.url("/home?saved=revoked");
    laptop.wait_for_url("home after signing the other device out", |url| url == revoked);
    let rows = laptop.execute("return document.querySelectorAll('#devices li.device').length;", json!([]));
    assert_eq!(rows, 1, "one device left");

    // The phone's next click sends it to the log-in page.
    phone.click(&phone.find("#nickname-form button[type=submit]"));
    phone.wait_for_url("the log-in page on the signed-out device", |url| url == login);
    assert!(phone.exists("#login-form"));

    // The laptop changes the password; the new one logs in, the old one does not.
    laptop.type_into(&laptop.find("#password-form input[name=password]"), PASSWORD);
    laptop.type_into(&laptop.find("#password-form input[name=new_password]"), "a new passphrase entirely");
    laptop.click(&laptop.find("#password-form button[type=submit]"));
    let changed = stack.url("/home?saved=password");
    laptop.wait_for_url("home after the password change", |url| url == changed);
    assert!(laptop.text(&laptop.find(".alert.notice")).contains("password is changed"));
    phone.type_into(&phone.find("#username"), &username);
    phone.type_into(&phone.find("#password"), PASSWORD);
    phone.click(&phone.find("#login-form button[type=submit]"));
    phone.wait_for("the error", "return document.querySelector('.alert.error') !== null;", json!([]));
    log_in(&phone, "a new passphrase entirely");
    assert_eq!(phone.text(&phone.find("#username")), username);

    // A sign-in from a new device and network is announced on the laptop's home page.
    let mut elsewhere = util::Http::from_source(stack.addr, "127.1.0.5".parse().expect("address"));
    let reply = elsewhere.api_post_with(
        "/login",
        &[("username", &username), ("password", "a new passphrase entirely")],
        &[("User-Agent", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0")],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The history drainer writes it within about a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        laptop.goto(&home);
        if laptop.exists(".new-sign-in") || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let notice = laptop.text(&laptop.find(".new-sign-in"));
    assert!(notice.contains("New sign-in: Firefox on Linux from 127.1.0.5"), "{notice}");
    assert!(laptop.exists(".new-sign-in form button[type=submit]"), "sign out that device, one click away");
    laptop.screenshot(&workspace_root().join("target/test-artifacts/new-sign-in.png"));
}
