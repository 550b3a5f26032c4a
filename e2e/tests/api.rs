//! The JSON API over real HTTP, against real tcpserver, MariaDB and Redis: every
//! endpoint's success and its errors, in each input encoding.

mod util;

use mysql::prelude::Queryable;
use util::{Stack, multipart, png, png_with_text};

const PASSWORD: &str = "correct horse battery";

#[test]
fn sign_up_log_in_and_read_the_profile() {
    let stack = Stack::start();
    let username = stack.username("bruce");
    let mut http = stack.client();

    let created =
        http.api_post("/signUp", &[("username", &username), ("password", PASSWORD), ("nickname", "Bruce")]);
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    assert_eq!(body["code"], 0);
    assert_eq!(body["message"], "ok");
    assert_eq!(body["data"]["username"], username.as_str());
    assert_eq!(body["data"]["nickname"], "Bruce");
    assert!(body["data"]["avatar_url"].is_null());

    let login = http.api_post("/login", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(login.status, 200, "{}", login.text());
    let data = &login.json()["data"];
    let token = data["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(data["username"], username.as_str());
    assert_eq!(data["nickname"], "Bruce");
    assert!(data.get("avatar_url").is_some());

    let auth = format!("Bearer {token}");
    let mut api = stack.client();
    let profile = api.request("GET", "/profile", &[("Authorization", &auth)], b"");
    assert_eq!(profile.status, 200, "{}", profile.text());
    assert_eq!(profile.json()["data"]["nickname"], "Bruce");
    assert!(profile.json()["data"].get("token").is_none(), "a profile does not repeat the token");

    let named =
        api.request("GET", &format!("/profile?username={username}"), &[("Authorization", &auth)], b"");
    assert_eq!(named.status, 200);
}

#[test]
fn sign_up_refuses_missing_fields_taken_names_and_bad_names() {
    let stack = Stack::start();
    let mut http = stack.client();
    let username = stack.username("dup");

    let missing = http.api_post("/signUp", &[("username", &username)]);
    assert_eq!(missing.status, 400);
    assert_eq!(missing.code(), 106);
    assert!(missing.json()["message"].as_str().unwrap().contains("password"));

    assert_eq!(http.api_post("/signUp", &[("username", &username), ("password", PASSWORD)]).status, 201);
    let taken = http.api_post("/signUp", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(taken.status, 409);
    assert_eq!(taken.code(), 5);

    let bad = http.api_post("/signUp", &[("username", "no spaces allowed"), ("password", PASSWORD)]);
    assert_eq!(bad.status, 400);
    assert_eq!(bad.code(), 2);
    let short = http.api_post("/signUp", &[("username", &stack.username("short")), ("password", "x")]);
    assert_eq!((short.status, short.code()), (400, 3));
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_401() {
    let stack = Stack::start();
    let username = stack.sign_up("victim", PASSWORD);
    let mut http = stack.client();
    let wrong = http.api_post("/login", &[("username", &username), ("password", "not the password")]);
    let unknown = http.api_post("/login", &[("username", &stack.username("nobody")), ("password", PASSWORD)]);
    assert_eq!((wrong.status, wrong.code()), (401, 6));
    assert_eq!((unknown.status, unknown.code()), (401, 6));
    assert_eq!(wrong.json()["message"], unknown.json()["message"]);
    assert!(wrong.all("set-cookie").iter().all(|c| !c.starts_with("um_session=")));
}

/// Five wrong passwords for one username close its throttle: the next
/// log-in, even with the right password, gets 429 with `Retry-After` and
/// creates no session, while another user logs in as usual.
#[test]
fn failed_logins_are_throttled_with_429_and_retry_after() {
    let stack = Stack::start();
    let victim = stack.sign_up("guessed", PASSWORD);
    let bystander = stack.sign_up("bystander", PASSWORD);
    let mut http = stack.client();
    for _ in 0..5 {
        let wrong = http.api_post("/login", &[("username", &victim), ("password", "not the password")]);
        assert_eq!((wrong.status, wrong.code()), (401, 6));
    }
    let refused = http.api_post("/login", &[("username", &victim), ("password", PASSWORD)]);
    assert_eq!((refused.status, refused.code()), (429, 7), "{}", refused.text());
    let retry_after: u64 = refused.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=300).contains(&retry_after), "Retry-After: {retry_after}");
    assert!(refused.json()["message"].as_str().is_some_and(|m| m.contains("Too many attempts")));
    assert!(refused.all("set-cookie").iter().all(|c| !c.starts_with("um_session=")));

    let other = stack.client().api_post("/login", &[("username", &bystander), ("password", PASSWORD)]);
    assert_eq!(other.status, 200, "another user is not slowed: {}", other.text());
}

#[test]
fn form_and_multipart_inputs_work_like_json() {
    let stack = Stack::start();
    let username = stack.sign_up("forms", PASSWORD);
    let mut http = stack.client();
    let form = util::urlencode(&[("username", &username), ("password", PASSWORD)]);
    let accept = ("Accept", "application/json");
    let urlencoded = http.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded"), accept],
        form.as_bytes(),
    );
    assert_eq!(urlencoded.status, 200, "{}", urlencoded.text());
    let (content_type, body) = multipart(&[("username", &username), ("password", PASSWORD)], None);
    let multi = http.request("POST", "/login", &[("Content-Type", &content_type), accept], &body);
    assert_eq!(multi.status, 200, "{}", multi.text());
    let bad_percent = http.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded"), accept],
        b"username=%zz&password=x",
    );
    assert_eq!((bad_percent.status, bad_percent.code()), (400, 107));
    let text = http.request("POST", "/login", &[("Content-Type", "text/plain"), accept], b"hello");
    assert_eq!((text.status, text.code()), (415, 108));
}

#[test]
fn profile_needs_a_session_and_only_shows_your_own() {
    let stack = Stack::start();
    let (_, token) = stack.user_with_token("alice", PASSWORD);
    let other = stack.sign_up("bob", PASSWORD);
    let mut http = stack.client();

    let none = http.api_get("/profile");
    assert_eq!((none.status, none.code()), (401, 8));
    let bogus = http.request("GET", "/profile", &[("Authorization", "Bearer 0123abcd")], b"");
    assert_eq!((bogus.status, bogus.code()), (401, 8));
    let auth = format!("Bearer {token}");
    let theirs = http.request("GET", &format!("/profile?username={other}"), &[("Authorization", &auth)], b"");
    assert_eq!((theirs.status, theirs.code()), (403, 9));
}

#[test]
fn nickname_changes_take_any_script_and_emoji() {
    let stack = Stack::start();
    let (username, token) = stack.user_with_token("dragon", PASSWORD);
    let other = stack.sign_up("other", PASSWORD);
    let auth = format!("Bearer {token}");
    let mut http = stack.client();

    let changed =
        http.api_post_with("/updateNickName", &[("nickname", "李小龍 🐉")], &[("Authorization", &auth)]);
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(changed.json()["data"]["nickname"], "李小龍 🐉");
    let profile = http.request("GET", "/profile", &[("Authorization", &auth)], b"");
    assert_eq!(profile.json()["data"]["nickname"], "李小龍 🐉");

    let named = http.api_post_with(
        "/updateNickName",
        &[("username", &username), ("nickname", "Little Dragon")],
        &[("Authorization", &auth)],
    );
    assert_eq!(named.status, 200);
    let missing = http.api_post_with("/updateNickName", &[], &[("Authorization", &auth)]);
    assert_eq!((missing.status, missing.code()), (400, 106));
    let control =
        http.api_post_with("/updateNickName", &[("nickname", "bad\u{7}bell")], &[("Authorization", &auth)]);
    assert_eq!((control.status, control.code()), (400, 4));
    let theirs = http.api_post_with(
        "/updateNickName",
        &[("username", &other), ("nickname", "hijacked")],
        &[("Authorization", &auth)],
    );
    assert_eq!((theirs.status, theirs.code()), (403, 9));
    let anonymous = http.api_post("/updateNickName", &[("nickname", "nobody")]);
    assert_eq!((anonymous.status, anonymous.code()), (401, 8));
}

#[test]
fn pictures_upload_and_are_served_immutable() {
    let stack = Stack::start();
    let (_, token) = stack.user_with_token("painter", PASSWORD);
    let auth = format!("Bearer {token}");
    let mut http = stack.client();
    let picture = png(24);

    let (content_type, body) = multipart(&[], Some(("image", "me.png", &picture)));
    let uploaded = http.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", &content_type), ("Authorization", &auth)],
        &body,
    );
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    let url = uploaded.json()["data"]["avatar_url"].as_str().expect("avatar_url").to_owned();
    assert!(url.starts_with("/static/avatars/") && url.ends_with(".png"), "{url}");

    let served = http.get(&url);
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("image/png"));
    assert_eq!(served.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(served.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(served.body, picture);

    // A raw body with an image type is accepted too.
    let raw = http.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", "image/png"), ("Authorization", &auth)],
        &png(8),
    );
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_ne!(raw.json()["data"]["avatar_url"].as_str(), Some(url.as_str()));
}

#[test]
fn uploads_that_are_not_pictures_or_too_large_are_refused() {
    let stack = Stack::start();
    let (_, token) = stack.user_with_token("uploader", PASSWORD);
    let auth = format!("Bearer {token}");
    let mut http = stack.client();

    let (content_type, body) = multipart(&[], Some(("image", "notes.png", b"just some text, honestly")));
    let text = http.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", &content_type), ("Authorization", &auth)],
        &body,
    );
    assert_eq!((text.status, text.code()), (415, 10));

    let huge = vec![0x42; proto::MAX_IMAGE_LEN + 1];
    let (content_type, body) = multipart(&[], Some(("image", "big.png", &huge)));
    let big = http.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", &content_type), ("Authorization", &auth)],
        &body,
    );
    assert_eq!((big.status, big.code()), (413, 11));

    let (content_type, body) = multipart(&[("note", "no file")], None);
    let none = http.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", &content_type), ("Authorization", &auth)],
        &body,
    );
    assert_eq!((none.status, none.code()), (400, 106));

    let (content_type, body) = multipart(&[], Some(("image", "me.png", &png(4))));
    let anonymous = http.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", &content_type), ("Accept", "application/json")],
        &body,
    );
    assert_eq!((anonymous.status, anonymous.code()), (401, 8));
}

/// POSTs `picture` to /uploadProfilePic as multipart with the bearer token.
fn upload(stack: &Stack, token: &str, picture: &[u8]) -> util::Reply {
    let (content_type, body) = multipart(&[], Some(("image", "me.png", picture)));
    let auth = format!("Bearer {token}");
    stack.client().request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", &content_type), ("Authorization", &auth)],
        &body,
    )
}

/// Of the pictures named by `urls`, the ones whose bytes are stored, sorted.
fn stored_pictures(stack: &Stack, urls: &[String]) -> Vec<String> {
    let mut mysql = stack.mysql();
    let mut names: Vec<String> = urls
        .iter()
        .map(|url| url.rsplit('/').next().expect("a picture name").to_owned())
        .filter(|name| {
            let found: Option<u64> =
                mysql.exec_first("SELECT 1 FROM avatar_bytes WHERE name = ?", (name,)).expect("query");
            found.is_some()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn uploads_past_the_hourly_limit_get_429_and_only_the_last_picture_stays() {
    let stack = Stack::start();
    let (_, token) = stack.user_with_token("often", PASSWORD);
    let mut urls = Vec::new();
    for i in 0..10 {
        let uploaded = upload(&stack, &token, &png_with_text(4, &format!("{} {i}", stack.user_prefix)));
        assert_eq!(uploaded.status, 200, "upload {i}: {}", uploaded.text());
        urls.push(uploaded.json()["data"]["avatar_url"].as_str().expect("avatar_url").to_owned());
    }
    let refused = upload(&stack, &token, &png_with_text(4, &format!("{} 10", stack.user_prefix)));
    assert_eq!((refused.status, refused.code()), (429, 7), "{}", refused.text());
    let retry_after: u64 = refused.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=3600).contains(&retry_after), "Retry-After: {retry_after}");
    let last = urls[9].rsplit('/').next().expect("a picture name").to_owned();
    assert_eq!(stored_pictures(&stack, &urls), vec![last], "replaced pictures are deleted");
    assert_eq!(stack.client().get(&urls[8]).status, 404, "and no longer served");
    assert_eq!(stack.client().get(&urls[9]).status, 200);
}

#[test]
fn logout_ends_the_session_on_the_server() {
    let stack = Stack::start();
    let (_, token) = stack.user_with_token("leaver", PASSWORD);
    let auth = format!("Bearer {token}");
    let mut http = stack.client();
    let out = http.api_post_with("/logout", &[], &[("Authorization", &auth)]);
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.code(), 0);
    let after = http.request("GET", "/profile", &[("Authorization", &auth)], b"");
    assert_eq!((after.status, after.code()), (401, 8));
}

#[test]
fn healthz_reports_the_backend() {
    let stack = Stack::start();
    let health = stack.client().get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["data"]["backend"], "up");
}
