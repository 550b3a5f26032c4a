//! The pages and forms as a browser uses them, over real HTTP: redirects,
//! cookies and their attributes, CSRF, escaping, errors in words, log-out.

mod util;

use util::{Http, Options, Stack, csrf_field, multipart};

const PASSWORD: &str = "correct horse battery";

/// Signs up and logs in through the forms, like a person; returns the username.
fn signed_in(stack: &Stack, http: &mut Http, suffix: &str) -> String {
    let username = stack.username(suffix);
    let created = http.submit("/signup", "/signUp", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(created.status, 303, "{}", created.text());
    let login = http.submit("/", "/login", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(login.status, 303, "{}", login.text());
    assert_eq!(login.header("location"), Some("/home"));
    username
}

#[test]
fn pages_carry_security_headers_and_a_csrf_cookie() {
    let stack = Stack::start();
    let mut http = stack.client();
    for path in ["/", "/signup"] {
        let page = http.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
        let csp = page.header("content-security-policy").expect("CSP");
        for directive in ["default-src 'self'", "frame-ancestors 'none'", "script-src 'self'"] {
            assert!(csp.contains(directive), "{csp}");
        }
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert!(page.header("referrer-policy").is_some());
        let scripts = page.text().matches("<script").count();
        let files = page.text().matches("<script src=\"/static/qr.js\" defer></script>").count();
        assert_eq!(scripts, files, "no inline script, only the site's own file");
        assert!(csrf_field(&page.text()).is_some_and(|t| t.len() == 64));
    }
    let fresh = stack.client().get("/");
    let cookie =
        fresh.all("set-cookie").into_iter().find(|c| c.starts_with("um_csrf=")).expect("csrf cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"));
    assert!(!cookie.contains("Secure"), "no Secure without --secure-cookies");
}

#[test]
fn sign_up_then_log_in_lands_on_home_with_a_proper_session_cookie() {
    let stack = Stack::start();
    let mut http = stack.client();
    let username = stack.username("person");
    let created = http.submit("/signup", "/signUp", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(created.status, 303);
    let next = created.header("location").expect("location").to_owned();
    assert_eq!(next, format!("/?created={username}"));
    let greeting = http.get(&next);
    assert!(greeting.text().contains("Your account is ready"));
    assert!(greeting.text().contains(&format!("value=\"{username}\"")), "username filled in");

    let login = http.submit("/", "/login", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(login.status, 303);
    let session =
        login.all("set-cookie").into_iter().find(|c| c.starts_with("um_session=")).expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    let home = http.get("/home");
    assert_eq!(home.status, 200);
    let html = home.text();
    assert!(html.contains(&format!("<span id=\"username\">{username}</span>")));
    assert!(html.contains("accept=\"image/*\""));
    assert!(html.contains("action=\"/logout\""));
    assert!(html.contains("avatar placeholder"), "no picture yet shows the placeholder");
    assert_eq!(http.get("/").header("location"), Some("/home"), "a signed-in visitor skips the log-in page");
}

#[test]
fn secure_cookies_flag_adds_secure() {
    let stack =
        Stack::start_with(Options::default().front_switch("--secure-cookies").front("--rpc-pool", "2"));
    let page = stack.client().get("/");
    let cookie = page.all("set-cookie").into_iter().find(|c| c.starts_with("um_csrf=")).expect("csrf cookie");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[test]
fn home_without_a_session_redirects_to_login() {
    let stack = Stack::start();
    let mut http = stack.client();
    let home = http.get("/home");
    assert_eq!(home.status, 302);
    assert_eq!(home.header("location"), Some("/"));
    http.set_cookie("um_session", "0000000000000000000000000000000000000000000000000000000000000000");
    let stale = http.get("/home");
    assert_eq!(stale.status, 302);
    assert!(stale.all("set-cookie").iter().any(|c| c.starts_with("um_session=;") && c.contains("Max-Age=0")));
}

#[test]
fn a_script_nickname_is_shown_escaped() {
    let stack = Stack::start();
    let mut http = stack.client();
    signed_in(&stack, &mut http, "xss");
    let evil = "<script>alert('x')</script>\"><img src=x>";
    let saved = http.submit("/home", "/updateNickName", &[("nickname", evil)]);
    assert_eq!(saved.status, 303, "{}", saved.text());
    assert_eq!(saved.header("location"), Some("/home?saved=nickname"));
    let home = http.get("/home?saved=nickname").text();
    assert!(!home.contains("<script>"), "raw markup must never reach the page");
    assert!(!home.contains("<img src=x>"));
    assert!(home.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;&lt;img src=x&gt;"));
    assert!(home.contains("Your nickname is saved."));
}

#[test]
fn wrong_password_shows_the_login_page_with_the_error() {
    let stack = Stack::start();
    let username = stack.sign_up("forgetful", PASSWORD);
    let mut http = stack.client();
    let failed = http.submit("/", "/login", &[("username", &username), ("password", "not it at all")]);
    assert_eq!(failed.status, 401);
    assert_eq!(failed.header("content-type"), Some("text/html; charset=utf-8"));
    let html = failed.text();
    assert!(html.contains("Wrong username or password."), "{html}");
    assert!(html.contains(&format!("value=\"{username}\"")), "the username is kept");
    assert!(!html.contains("not it at all"), "the password is never echoed");
}

#[test]
fn a_taken_name_shows_the_signup_page_with_409() {
    let stack = Stack::start();
    let username = stack.sign_up("first", PASSWORD);
    let mut http = stack.client();
    let again = http.submit(
        "/signup",
        "/signUp",
        &[("username", &username), ("password", PASSWORD), ("nickname", "Me")],
    );
    assert_eq!(again.status, 409);
    assert!(again.text().contains("That username is taken."));
    assert!(again.text().contains("value=\"Me\""), "the nickname is kept");
}

#[test]
fn bad_uploads_show_home_with_the_error_in_words() {
    let stack = Stack::start();
    let mut http = stack.client();
    signed_in(&stack, &mut http, "badfile");
    let token = csrf_field(&http.get("/home").text()).expect("token");
    let origin = format!("http://{}", stack.addr);
    let (content_type, body) =
        multipart(&[("csrf", &token)], Some(("image", "cv.pdf", b"%PDF-1.4 not a picture")));
    let refused = http.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", &content_type), ("Origin", &origin)],
        &body,
    );
    assert_eq!(refused.status, 415);
    assert!(refused.text().contains("id=\"picture-form\""), "home is shown again");
    assert!(refused.text().contains("class=\"alert error\""));

    let huge = vec![7u8; proto::MAX_IMAGE_LEN + 10];
    let (content_type, body) = multipart(&[("csrf", &token)], Some(("image", "big.png", &huge)));
    let too_big = http.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", &content_type), ("Origin", &origin)],
        &body,
    );
    assert_eq!(too_big.status, 413);
    assert!(too_big.text().contains("too large"), "{}", too_big.text());
}

#[test]
fn cross_site_posts_with_the_cookie_are_refused() {
    let stack = Stack::start();
    let mut http = stack.client();
    let username = signed_in(&stack, &mut http, "target");
    let token = csrf_field(&http.get("/home").text()).expect("token");

    // Another site's form: the browser sends the cookies but the origin is foreign.
    let forged = http.form_post(
        "/updateNickName",
        &[("csrf", &token), ("nickname", "pwned")],
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(forged.status, 403);
    // No token at all, same origin or not.
    let tokenless = http.form_post("/updateNickName", &[("nickname", "pwned")], &[]);
    assert_eq!(tokenless.status, 403);
    // Asking for JSON does not lift the check while the session cookie is used.
    let json = http.request(
        "POST",
        "/updateNickName",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
        b"nickname=pwned",
    );
    assert_eq!((json.status, json.code()), (403, 109));
    // A cross-site log-out is refused too.
    assert_eq!(http.form_post("/logout", &[], &[("Origin", "http://evil.example")]).status, 403);

    let home = http.get("/home").text();
    assert!(!home.contains("pwned"));
    assert!(home.contains(&username));
}

/// What a proxy in front that adds HTTP Basic credentials puts on every request.
const PROXY_BASIC: (&str, &str) = ("Authorization", "Basic cHJveHk6c2VjcmV0");

#[test]
fn a_cross_site_login_with_basic_credentials_and_no_csrf_token_is_refused() {
    let stack = Stack::start();
    let attacker = stack.sign_up("attacker", PASSWORD);
    let login = [("username", attacker.as_str()), ("password", PASSWORD)];
    let session_set =
        |reply: &util::Reply| reply.all("set-cookie").iter().any(|c| c.starts_with("um_session="));

    // Another site's form, in a browser behind the proxy: refused, and no session set.
    let mut victim = stack.client();
    let _ = victim.get("/"); // the victim has been here before: it has a CSRF cookie
    let cross_site = [PROXY_BASIC, ("Sec-Fetch-Site", "cross-site"), ("Origin", "http://evil.example")];
    let form = victim.form_post("/login", &login, &cross_site);
    assert_eq!(form.status, 403, "{}", form.text());
    assert!(!session_set(&form), "{:?}", form.headers);
    // The same as an API call: 403, code 109.
    let mut headers = vec![("Accept", "application/json")];
    headers.extend_from_slice(&cross_site);
    let api = victim.form_post("/login", &login, &headers);
    assert_eq!((api.status, api.code()), (403, 109), "{}", api.text());
    assert!(!session_set(&api), "{:?}", api.headers);
    // A browser that sends no origin headers at all still needs the token.
    let bare = victim.form_post("/login", &login, &[PROXY_BASIC]);
    assert_eq!(bare.status, 403, "{}", bare.text());
    assert!(!session_set(&bare) && victim.cookie("um_session").is_none());

    // Behind that proxy the site works as usual: the page's own form logs in,
    // and the cookie, not the Basic header, is the session.
    let mut user = stack.client();
    let token = csrf_field(&user.get("/").text()).expect("token");
    let origin = format!("http://{}", stack.addr);
    let mut fields = vec![("csrf", token.as_str())];
    fields.extend_from_slice(&login);
    let ok = user.form_post("/login", &fields, &[PROXY_BASIC, ("Origin", &origin)]);
    assert_eq!((ok.status, ok.header("location")), (303, Some("/home")), "{}", ok.text());
    let home = user.request("GET", "/home", &[PROXY_BASIC], b"");
    assert_eq!(home.status, 200, "{}", home.text());
    assert!(home.text().contains(&attacker));
}

#[test]
fn a_bearer_authenticated_call_needs_no_csrf_token() {
    let stack = Stack::start();
    let (_, token) = stack.user_with_token("bearer", PASSWORD);
    let auth = format!("Bearer {token}");
    let mut api = stack.client();
    let changed =
        api.form_post("/updateNickName", &[("nickname", "No token needed")], &[("Authorization", &auth)]);
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(changed.json()["data"]["nickname"], "No token needed");
}

#[test]
fn log_in_rotates_the_csrf_token_and_the_old_one_is_refused() {
    let stack = Stack::start();
    let username = stack.sign_up("rotated", PASSWORD);
    let mut http = stack.client();
    let before = csrf_field(&http.get("/").text()).expect("token on the log-in page");
    assert_eq!(http.cookie("um_csrf"), Some(before.as_str()));
    let origin = format!("http://{}", stack.addr);
    let login = http.form_post(
        "/login",
        &[("csrf", &before), ("username", &username), ("password", PASSWORD)],
        &[("Origin", &origin)],
    );
    assert_eq!(login.status, 303, "{}", login.text());
    let after = http.cookie("um_csrf").expect("a CSRF cookie after log-in").to_owned();
    assert_ne!(after, before, "log-in sets a fresh token");
    assert!(login.all("set-cookie").iter().any(|c| c.starts_with("um_csrf=") && c.contains("HttpOnly")));

    let stale = http.form_post(
        "/updateNickName",
        &[("csrf", &before), ("nickname", "stale")],
        &[("Origin", &origin)],
    );
    assert_eq!(stale.status, 403, "the token from before the log-in is refused: {}", stale.text());
    let page = csrf_field(&http.get("/home").text()).expect("token on home");
    assert_eq!(page, after, "the home page's forms carry the new token");
    let fresh =
        http.form_post("/updateNickName", &[("csrf", &after), ("nickname", "fresh")], &[("Origin", &origin)]);
    assert_eq!(fresh.status, 303, "{}", fresh.text());
    assert!(http.get("/home").text().contains("fresh"));
}

#[test]
fn logout_clears_the_cookie_and_ends_the_session() {
    let stack = Stack::start();
    let mut http = stack.client();
    signed_in(&stack, &mut http, "bye");
    let token = http.cookie("um_session").expect("session cookie").to_owned();
    let out = http.submit("/home", "/logout", &[]);
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/"));
    assert!(out.all("set-cookie").iter().any(|c| c.starts_with("um_session=;") && c.contains("Max-Age=0")));
    assert_eq!(http.get("/home").status, 302);
    // The old token is dead on the server, not just forgotten by the browser.
    let reuse =
        stack.client().request("GET", "/profile", &[("Authorization", &format!("Bearer {token}"))], b"");
    assert_eq!(reuse.status, 401);
}
