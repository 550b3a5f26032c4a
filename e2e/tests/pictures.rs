//! Pictures on a fleet: two tcpserver/httpserver pairs on one MariaDB, as
//! two machines would be. A picture uploaded through one pair is served,
//! byte for byte, by the other; the store (MariaDB) keeps one copy per
//! picture, counted, and drops it when no account uses it; httpserver answers
//! unknown names 404 (malformed ones without asking tcpserver), and its
//! picture cache never holds more than its bound.
//!
//! Every picture is [`png_with_text`] of a text holding the stack's username
//! prefix, so its name and rows are this test's alone.

mod util;

use std::io::Write;
use std::sync::Barrier;
use std::thread;

use mysql::prelude::Queryable;
use util::{Http, Stack, connect, png_with_text, read_reply};

const PASSWORD: &str = "pictures-password";

/// POSTs `picture` to /uploadProfilePic of `http` with the bearer token; the
/// picture's URL.
fn upload(http: &mut Http, token: &str, picture: &[u8]) -> String {
    let auth = format!("Bearer {token}");
    let reply = http.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", "image/png"), ("Authorization", &auth)],
        picture,
    );
    assert_eq!(reply.status, 200, "upload: {}", reply.text());
    reply.json()["data"]["avatar_url"].as_str().expect("avatar_url").to_owned()
}

/// The picture's name: the last segment of its URL.
fn name_of(url: &str) -> &str {
    url.rsplit('/').next().expect("a name")
}

/// The count of accounts using the picture at `url`, and how many copies of
/// its bytes the store holds.
fn in_store(stack: &Stack, url: &str) -> (Option<u32>, u64) {
    let mut mysql = stack.mysql();
    let refs: Option<u32> =
        mysql.exec_first("SELECT refs FROM avatars WHERE name = ?", (name_of(url),)).expect("query avatars");
    let copies: Option<u64> = mysql
        .exec_first("SELECT COUNT(*) FROM avatar_bytes WHERE name = ?", (name_of(url),))
        .expect("query avatar_bytes");
    (refs, copies.unwrap_or(0))
}

/// A sample of httpserver's `/metrics` (one without labels), as a number.
fn metric(http: &mut Http, name: &str) -> f64 {
    let text = http.get("/metrics").text();
    let line = text.lines().find(|l| l.split(' ').next() == Some(name));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn a_picture_uploaded_through_one_pair_is_served_byte_identical_by_the_other() {
    let stack = Stack::start();
    let other = stack.another_pair(&[]);
    let (_, token) = stack.user_with_token("travel", PASSWORD);
    let picture = png_with_text(40, &format!("{} travels", stack.user_prefix));
    let url = upload(&mut stack.client(), &token, &picture);

    for (which, mut http) in [("the other pair", other.client()), ("the same pair", stack.client())] {
        let served = http.get(&url);
        assert_eq!(served.status, 200, "{which}: {}", served.text());
        assert_eq!(served.body, picture, "{which}");
        assert_eq!(served.header("content-type"), Some("image/png"), "{which}");
        assert_eq!(served.header("cache-control"), Some("public, max-age=31536000, immutable"));
        assert_eq!(served.header("x-content-type-options"), Some("nosniff"));
        let etag = served.header("etag").expect("an ETag").to_owned();
        assert_eq!(etag, format!("\"{}\"", name_of(&url).split('.').next().unwrap_or_default()));

        let head = http.request("HEAD", &url, &[], b"");
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some(picture.len().to_string().as_str()));

        // A revalidation naming the ETag: 304, no body (read as a HEAD's).
        let mut stream = connect(other.addr);
        write!(stream, "GET {url} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n").expect("send");
        let revalidated = read_reply(&mut stream, true);
        assert_eq!(revalidated.status, 304);
        assert_eq!(revalidated.header("etag"), Some(etag.as_str()));
    }
    // The profile read through the other pair points at the same URL.
    let profile =
        other.client().request("GET", "/profile", &[("Authorization", &format!("Bearer {token}"))], b"");
    assert_eq!(profile.json()["data"]["avatar_url"].as_str(), Some(url.as_str()), "{}", profile.text());
}

/// A picture of exactly the 2 MiB cap, uploaded through one pair and served
/// whole by the other (the largest statement, row and reply frame there are).
#[test]
fn a_picture_at_the_size_cap_travels_whole_between_pairs() {
    let stack = Stack::start();
    let other = stack.another_pair(&[]);
    let (_, token) = stack.user_with_token("large", PASSWORD);
    let stamp = format!("{} large ", stack.user_prefix);
    let unpadded = png_with_text(1, &stamp).len();
    let picture = png_with_text(1, &format!("{stamp}{}", "x".repeat(proto::MAX_IMAGE_LEN - unpadded)));
    assert_eq!(picture.len(), proto::MAX_IMAGE_LEN);
    let url = upload(&mut stack.client(), &token, &picture);
    let served = other.client().get(&url);
    assert_eq!((served.status, served.body.len()), (200, picture.len()));
    assert!(served.body == picture, "the picture came back changed");
}

#[test]
fn a_replaced_picture_leaves_the_store_and_is_404_where_it_was_never_served() {
    let stack = Stack::start();
    let other = stack.another_pair(&[]);
    let (_, token) = stack.user_with_token("changer", PASSWORD);
    let first =
        upload(&mut stack.client(), &token, &png_with_text(8, &format!("{} first", stack.user_prefix)));
    assert_eq!(in_store(&stack, &first), (Some(1), 1));
    let second =
        upload(&mut other.client(), &token, &png_with_text(8, &format!("{} second", stack.user_prefix)));
    assert_eq!(in_store(&stack, &first), (None, 0), "no account uses the first picture");
    assert_eq!(in_store(&stack, &second), (Some(1), 1));
    for mut http in [stack.client(), other.client()] {
        assert_eq!(http.get(&first).status, 404);
        assert_eq!(http.get(&second).status, 200);
    }
}

#[test]
fn unknown_names_are_404_and_malformed_ones_never_reach_tcpserver() {
    let stack = Stack::start();
    let mut http = stack.client();
    let unknown = format!("/static/avatars/{}.png", "0f".repeat(32));
    assert_eq!(http.get(&unknown).status, 404);
    assert_eq!(http.api_get(&unknown).code(), 100);

    let calls = metric(&mut http, "usermgmt_avatar_cache_misses_total");
    let digest = "ab".repeat(32);
    for malformed in [
        format!("/static/avatars/{digest}.svg"),
        format!("/static/avatars/{digest}.PNG"),
        format!("/static/avatars/{}.png", "AB".repeat(32)),
        format!("/static/avatars/{}.png", "ab".repeat(31)),
        format!("/static/avatars/{digest}.png.gif"),
        format!("/static/avatars/{digest}%2epng"),
        "/static/avatars/../style.css".to_owned(),
        "/static/avatars/.gitkeep".to_owned(),
        "/static/avatars/".to_owned(),
    ] {
        assert_eq!(http.get(&malformed).status, 404, "{malformed}");
    }
    assert_eq!(metric(&mut http, "usermgmt_avatar_cache_misses_total"), calls, "no lookup was made");
    assert_eq!(http.request("POST", &unknown, &[], b"").status, 405);
}

/// Forty accounts' pictures of about 40 KB each (1.6 MB in all) through an
/// httpserver whose cache may hold 1 MiB: after every picture served, the
/// cache's own accounting (its metric) is within the bound, and every picture
/// is still served whole, from memory or again from tcpserver.
#[test]
fn the_picture_cache_never_holds_more_than_its_bound() {
    const ACCOUNTS: usize = 40;
    const BOUND: f64 = (1 << 20) as f64;
    let stack = Stack::start_with(util::Options::under_load().front("--avatar-cache-mib", 1));
    let pictures: Vec<(String, Vec<u8>)> = (0..ACCOUNTS)
        .map(|i| {
            let (_, token) = stack.user_with_token(&format!("many{i}"), PASSWORD);
            let picture = png_with_text(120, &format!("{} many {i}", stack.user_prefix));
            (upload(&mut stack.client(), &token, &picture), picture)
        })
        .collect();
    let total: usize = pictures.iter().map(|(_, p)| p.len()).sum();
    assert!(total as f64 > 1.5 * BOUND, "the pictures ({total} bytes) overflow the cache");

    let mut http = stack.client();
    let mut most = 0f64;
    for round in 0..2 {
        for (url, picture) in &pictures {
            let served = http.get(url);
            assert_eq!((served.status, served.body.len()), (200, picture.len()), "round {round}: {url}");
            assert!(served.body == *picture, "round {round}: {url} is not the picture uploaded");
            let held = metric(&mut http, "usermgmt_avatar_cache_bytes");
            assert!(held <= BOUND, "round {round}: the cache holds {held} bytes");
            most = most.max(held);
        }
    }
    assert!(most > BOUND / 2.0, "the cache was used: at most {most} bytes");
    assert!(metric(&mut http, "usermgmt_avatar_cache_entries") < ACCOUNTS as f64, "pictures were evicted");
}

/// Two accounts upload the same picture at the same moment, one through each
/// pair, round after round, each round a new picture that both switch to:
/// every round the store holds one copy counted twice, and the picture they
/// left is gone.
#[test]
fn the_same_picture_uploaded_at_once_through_both_pairs_is_stored_once_and_counted_twice() {
    const ROUNDS: usize = 5;
    let stack = Stack::start();
    let other = stack.another_pair(&[]);
    let (_, ann) = stack.user_with_token("ann", PASSWORD);
    let (_, bob) = stack.user_with_token("bob", PASSWORD);
    let mut previous: Option<String> = None;
    for round in 0..ROUNDS {
        let picture = png_with_text(8, &format!("{} shared {round}", stack.user_prefix));
        let start = Barrier::new(2);
        let urls: Vec<String> = thread::scope(|s| {
            let uploads = [(stack.client(), &ann), (other.client(), &bob)].map(|(mut http, token)| {
                let (start, picture) = (&start, &picture);
                s.spawn(move || {
                    start.wait();
                    upload(&mut http, token, picture)
                })
            });
            uploads.map(|t| t.join().expect("upload thread")).to_vec()
        });
        assert_eq!(urls[0], urls[1], "round {round}: one name for one picture");
        assert_eq!(in_store(&stack, &urls[0]), (Some(2), 1), "round {round}");
        if let Some(previous) = &previous {
            assert_eq!(in_store(&stack, previous), (None, 0), "round {round}: the picture both left");
        }
        for mut http in [stack.client(), other.client()] {
            assert!(http.get(&urls[0]).body == picture, "round {round}");
        }
        previous = Some(urls[0].clone());
    }
}

#[test]
fn deleting_an_account_through_one_pair_releases_its_picture_everywhere() {
    let stack = Stack::start();
    let other = stack.another_pair(&[]);
    let (user, token) = stack.user_with_token("leaver", PASSWORD);
    let url =
        upload(&mut stack.client(), &token, &png_with_text(8, &format!("{} leaves", stack.user_prefix)));
    assert_eq!(in_store(&stack, &url), (Some(1), 1));
    let deleted = other.client().request(
        "POST",
        "/deleteAccount",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("Authorization", &format!("Bearer {token}")),
        ],
        serde_json::json!({ "password": PASSWORD, "confirm": user }).to_string().as_bytes(),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(in_store(&stack, &url), (None, 0));
    for mut http in [stack.client(), other.client()] {
        assert_eq!(http.get(&url).status, 404);
    }
}
