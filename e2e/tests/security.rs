//! Account security over real HTTP against both servers, MariaDB and Redis:
//! the device list and signing devices out, the log-in history (including
//! after a SIGKILL of tcpserver), the new-device notice, changing the
//! password and deleting the account. Clients bind 127.0.0.2 and 127.0.0.3
//! so that the servers see two addresses, and 127.1.0.x for another network
//! (/24) than 127.0.0.x.

mod util;

use std::net::IpAddr;
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::Value;
use util::{Http, Options, Stack, multipart, png, png_with_text};

const PASSWORD: &str = "correct horse battery";
const FIREFOX: &str = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// How long a test waits for the history drainer (it runs about four times a second).
const DRAIN_WAIT: Duration = Duration::from_secs(20);

fn addr(a: &str) -> IpAddr {
    a.parse().expect("address")
}

/// Logs in through the JSON API from `source` with a User-Agent; returns the reply.
fn log_in_from(stack: &Stack, source: &str, agent: &str, username: &str, password: &str) -> util::Reply {
    let mut http = Http::from_source(stack.addr, addr(source));
    http.api_post_with("/login", &[("username", username), ("password", password)], &[("User-Agent", agent)])
}

fn token_of(reply: &util::Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["data"]["token"].as_str().expect("token").to_owned()
}

fn bearer_get(stack: &Stack, token: &str, path: &str) -> util::Reply {
    stack.client().request("GET", path, &[("Authorization", &format!("Bearer {token}"))], b"")
}

fn bearer_post(stack: &Stack, token: &str, path: &str, fields: &[(&str, &str)]) -> util::Reply {
    stack.client().api_post_with(path, fields, &[("Authorization", &format!("Bearer {token}"))])
}

fn sessions(stack: &Stack, token: &str) -> Vec<Value> {
    let reply = bearer_get(stack, token, "/sessions");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["data"]["sessions"].as_array().expect("sessions").clone()
}

fn history(stack: &Stack, token: &str) -> Vec<Value> {
    let reply = bearer_get(stack, token, "/loginHistory");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["data"]["logins"].as_array().expect("logins").clone()
}

/// The history once it holds at least `n` attempts (the drainer is asynchronous).
fn history_of_at_least(stack: &Stack, token: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + DRAIN_WAIT;
    loop {
        let logins = history(stack, token);
        if logins.len() >= n || Instant::now() > deadline {
            return logins;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_devices_are_listed_and_signing_one_out_ends_it_at_once() {
    let stack = Stack::start();
    let user = stack.sign_up("devices", PASSWORD);
    let firefox = token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    let chrome = token_of(&log_in_from(&stack, "127.0.0.3", CHROME, &user, PASSWORD));

    let listed = sessions(&stack, &firefox);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let find = |browser: &str| listed.iter().find(|s| s["browser"] == browser).expect(browser).clone();
    let (mine, other) = (find("Firefox"), find("Chrome"));
    assert_eq!(
        (mine["os"].as_str(), mine["ip"].as_str(), mine["current"].as_bool()),
        (Some("Linux"), Some("127.0.0.2"), Some(true))
    );
    assert_eq!(
        (other["os"].as_str(), other["ip"].as_str(), other["current"].as_bool()),
        (Some("Windows"), Some("127.0.0.3"), Some(false))
    );
    for s in &listed {
        let id = s["id"].as_str().expect("id");
        assert!(
            s["created"].as_u64().unwrap() > 1_700_000_000
                && s["last_used"].as_u64().unwrap() >= s["created"].as_u64().unwrap()
        );
        assert!(id != firefox && id != chrome, "an id is not a token");
        // Nor can it be used as one.
        assert_eq!(bearer_get(&stack, id, "/profile").status, 401);
    }

    let revoked = bearer_post(&stack, &firefox, "/sessions/revoke", &[("id", other["id"].as_str().unwrap())]);
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(bearer_get(&stack, &chrome, "/profile").status, 401, "the revoked token fails at once");
    assert_eq!(bearer_get(&stack, &firefox, "/profile").status, 200, "the other one works");
    assert_eq!(sessions(&stack, &firefox).len(), 1);

    let again = bearer_post(&stack, &firefox, "/sessions/revoke", &[("id", other["id"].as_str().unwrap())]);
    assert_eq!((again.status, again.code()), (404, 17), "{}", again.text());
    // Another account's session ids are not this account's to end.
    let stranger = stack.sign_up("stranger", PASSWORD);
    let theirs = token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &stranger, PASSWORD));
    let their_id = sessions(&stack, &theirs)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(bearer_post(&stack, &firefox, "/sessions/revoke", &[("id", &their_id)]).status, 404);
    assert_eq!(bearer_get(&stack, &theirs, "/profile").status, 200);
}

#[test]
fn signing_out_all_others_leaves_only_the_current_session() {
    let stack = Stack::start();
    let user = stack.sign_up("others", PASSWORD);
    let tokens: Vec<String> =
        (0..3).map(|_| token_of(&log_in_from(&stack, "127.0.0.2", CHROME, &user, PASSWORD))).collect();
    let ended = bearer_post(&stack, &tokens[1], "/sessions/revokeOthers", &[]);
    assert_eq!(ended.status, 200, "{}", ended.text());
    assert_eq!(ended.json()["data"]["ended"], 2);
    let left = sessions(&stack, &tokens[1]);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["current"], true);
    assert_eq!(bearer_get(&stack, &tokens[0], "/profile").status, 401);
    assert_eq!(bearer_get(&stack, &tokens[2], "/profile").status, 401);
    assert_eq!(bearer_get(&stack, &tokens[1], "/profile").status, 200);
}

#[test]
fn history_holds_successes_and_failures_newest_first_and_only_the_accounts_own() {
    let stack = Stack::start();
    let user = stack.sign_up("history", PASSWORD);
    let other = stack.sign_up("neighbour", PASSWORD);
    let token = token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    for _ in 0..4 {
        assert_eq!(log_in_from(&stack, "127.0.0.3", CHROME, &user, "wrong password").status, 401);
    }
    log_in_from(&stack, "127.0.0.3", CHROME, &other, PASSWORD);
    // The fifth failure fills the per-user limit; the sixth is refused unhashed.
    assert_eq!(log_in_from(&stack, "127.0.0.3", CHROME, &user, "wrong password").status, 401);
    assert_eq!(log_in_from(&stack, "127.0.0.3", CHROME, &user, PASSWORD).status, 429);

    let logins = history_of_at_least(&stack, &token, 7);
    let outcomes: Vec<&str> = logins.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
    assert_eq!(
        outcomes,
        [
            "throttled",
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "success"
        ],
        "{logins:?}"
    );
    let first = &logins[6];
    assert_eq!(
        (first["ip"].as_str(), first["browser"].as_str(), first["os"].as_str()),
        (Some("127.0.0.2"), Some("Firefox"), Some("Linux"))
    );
    assert_eq!((first["method"].as_str(), first["new_device"].as_bool()), (Some("password"), Some(true)));
    for l in &logins[..6] {
        assert_eq!(
            (l["ip"].as_str(), l["browser"].as_str(), l["os"].as_str()),
            (Some("127.0.0.3"), Some("Chrome"), Some("Windows"))
        );
        assert_eq!(l["new_device"], false);
    }
    let times: Vec<u64> = logins.iter().map(|l| l["time"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    // An unknown username leaves no row anywhere.
    log_in_from(&stack, "127.0.0.2", CHROME, &stack.username("nobody"), PASSWORD);
    thread::sleep(Duration::from_secs(1));
    assert_eq!(history(&stack, &token).len(), 7, "only the account's own");
}

#[test]
fn several_failures_then_a_success_from_a_new_network_is_suspicious() {
    let stack = Stack::start_with(Options::default().back("--login-failures-per-user", "50/300"));
    let user = stack.sign_up("suspect", PASSWORD);
    let token = token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    // A known device after failures is no news; a new network after them is.
    for _ in 0..3 {
        log_in_from(&stack, "127.0.0.2", FIREFOX, &user, "wrong password");
    }
    token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    for _ in 0..3 {
        log_in_from(&stack, "127.1.0.9", CHROME, &user, "wrong password");
    }
    token_of(&log_in_from(&stack, "127.1.0.9", CHROME, &user, PASSWORD));
    let logins = history_of_at_least(&stack, &token, 9);
    assert_eq!(logins.len(), 9, "{logins:?}");
    assert_eq!(
        (logins[0]["outcome"].as_str(), logins[0]["new_device"].as_bool(), logins[0]["suspicious"].as_bool()),
        (Some("success"), Some(true), Some(true))
    );
    assert_eq!(
        (logins[4]["outcome"].as_str(), logins[4]["new_device"].as_bool(), logins[4]["suspicious"].as_bool()),
        (Some("success"), Some(false), Some(false))
    );
    assert!(logins.iter().skip(1).all(|l| l["suspicious"] == false));
}

#[test]
fn sigkill_right_after_a_burst_of_acknowledged_log_ins_loses_no_history_row() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 25;
    // Simultaneous first log-ins of one account hold places in its failure
    // counter while they are hashed; the limit is raised so that all succeed.
    let mut stack = Stack::start_with(Options::under_load().back("--login-failures-per-user", "1000/300"));
    let user = stack.sign_up("burst", PASSWORD);
    let acknowledged: usize = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut http = stack.client();
                    (0..PER_THREAD)
                        .filter(|_| {
                            let reply = http.api_post_with(
                                "/login",
                                &[("username", &user), ("password", PASSWORD)],
                                &[("User-Agent", FIREFOX)],
                            );
                            reply.status == 200
                        })
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("client thread")).sum()
    });
    assert_eq!(acknowledged, THREADS * PER_THREAD, "every log-in succeeds");
    // The history queues (`hist:{q<n>}`, spread over the slots, and the old `hist:queue`).
    let mut redis = stack.redis();
    let queued: u64 = util::redis_keys(&mut redis, &format!("{}hist:", stack.redis_prefix))
        .iter()
        .map(|queue| redis::cmd("LLEN").arg(queue).query::<u64>(&mut redis).expect("LLEN"))
        .sum();
    stack.kill_backend();
    eprintln!("SIGKILL with {queued} of {acknowledged} acknowledged log-ins' records still in Redis");
    stack.start_backend();

    let mut mysql = stack.mysql();
    let count = |mysql: &mut mysql::Conn| -> u64 {
        mysql
            .exec_first(
                "SELECT COUNT(*) FROM logins l JOIN users u ON u.id = l.user_id WHERE u.username = ? AND l.outcome = 'success'",
                (&user,),
            )
            .expect("count")
            .unwrap_or(0)
    };
    let deadline = Instant::now() + DRAIN_WAIT;
    while count(&mut mysql) < acknowledged as u64 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&mut mysql), acknowledged as u64, "one row per acknowledged log-in, none twice");
}

#[test]
fn a_new_sign_in_is_announced_escaped_on_the_other_sessions_home_page_and_not_twice() {
    let stack = Stack::start();
    let user = stack.sign_up("notice", PASSWORD);
    let mut first = Http::from_source(stack.addr, addr("127.0.0.2"));
    let page = first.submit("/", "/login", &[("username", &user), ("password", PASSWORD)]);
    assert_eq!(page.status, 303, "{}", page.text());
    let hostile = "<script>alert(1)</script>";
    let token = token_of(&log_in_from(&stack, "127.1.0.3", hostile, &user, PASSWORD));

    let deadline = Instant::now() + DRAIN_WAIT;
    let home = loop {
        let home = first.get("/home").text();
        if home.contains("New sign-in:") || Instant::now() > deadline {
            break home;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(home.contains("New sign-in: Unknown on Unknown from 127.1.0.3"), "{home}");
    assert!(home.contains("Sign out that device") && home.contains("href=\"#change-password\""));
    assert!(!home.contains(hostile), "the User-Agent never reaches the page as markup");
    // The new session's own home page has no notice about itself.
    let mut second = Http::from_source(stack.addr, addr("127.1.0.3"));
    second.set_cookie("um_session", &token);
    assert!(!second.get("/home").text().contains("New sign-in:"));

    // The same device again is not new.
    token_of(&log_in_from(&stack, "127.1.0.3", hostile, &user, PASSWORD));
    let logins = history_of_at_least(&stack, &token, 3);
    let flags: Vec<bool> = logins.iter().map(|l| l["new_device"].as_bool().unwrap()).collect();
    assert_eq!(flags, [false, true, true], "{logins:?}");
    // "Sign out that device" from the notice works.
    let id =
        home.split("name=\"id\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("id field");
    let csrf = util::csrf_field(&home).expect("csrf");
    let origin = format!("http://{}", stack.addr);
    let out = first.form_post("/sessions/revoke", &[("csrf", &csrf), ("id", id)], &[("Origin", &origin)]);
    assert_eq!(out.status, 303, "{}", out.text());
    assert_eq!(bearer_get(&stack, &token, "/profile").status, 401, "that device is signed out");
}

#[test]
fn a_changed_password_ends_other_sessions_and_the_old_one_works_nowhere() {
    let stack = Stack::start();
    let user = stack.sign_up("changer", PASSWORD);
    let keep = token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    let other = token_of(&log_in_from(&stack, "127.0.0.3", CHROME, &user, PASSWORD));
    // A repeated log-in: now the log-in record and the verified cache know the password.
    token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    let new = "a brand new passphrase";

    let same =
        bearer_post(&stack, &keep, "/changePassword", &[("password", PASSWORD), ("new_password", PASSWORD)]);
    assert_eq!((same.status, same.code()), (400, 18), "{}", same.text());
    let short =
        bearer_post(&stack, &keep, "/changePassword", &[("password", PASSWORD), ("new_password", "short")]);
    assert_eq!((short.status, short.code()), (400, 3));
    let wrong = bearer_post(
        &stack,
        &keep,
        "/changePassword",
        &[("password", "not it at all"), ("new_password", new)],
    );
    assert_eq!((wrong.status, wrong.code()), (401, 6));

    let changed =
        bearer_post(&stack, &keep, "/changePassword", &[("password", PASSWORD), ("new_password", new)]);
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(changed.json()["data"]["ended"], 2);
    assert_eq!(bearer_get(&stack, &other, "/profile").status, 401, "other sessions end");
    assert_eq!(bearer_get(&stack, &keep, "/profile").status, 200, "the current one stays");
    let old = log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD);
    assert_eq!((old.status, old.code()), (401, 6), "the old password is refused, record and cache or not");
    token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, new));
}

#[test]
fn simultaneous_wrong_current_passwords_stop_at_the_log_in_limit() {
    const GUESSES: usize = 20;
    let stack = Stack::start();
    let user = stack.sign_up("guessed", PASSWORD);
    let token = token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    let statuses: Vec<u16> = thread::scope(|scope| {
        let guesses: Vec<_> = (0..GUESSES)
            .map(|i| {
                let token = &token;
                let stack = &stack;
                scope.spawn(move || {
                    let guess = format!("guess number {i}");
                    bearer_post(
                        stack,
                        token,
                        "/changePassword",
                        &[("password", &guess), ("new_password", "whatever it is")],
                    )
                    .status
                })
            })
            .collect();
        guesses.into_iter().map(|g| g.join().expect("guess")).collect()
    });
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert_eq!((count(401), count(429)), (5, GUESSES - 5), "{statuses:?}");
    // The same limit holds at the log-in form, and the right password now waits too.
    assert_eq!(log_in_from(&stack, "127.0.0.3", CHROME, &user, PASSWORD).status, 429);
    let right = bearer_post(
        &stack,
        &token,
        "/changePassword",
        &[("password", PASSWORD), ("new_password", "whatever it is")],
    );
    assert_eq!(right.status, 429);
}

#[test]
fn a_deleted_account_frees_its_name_and_ends_its_sessions_while_a_shared_picture_keeps_serving() {
    let stack = Stack::start();
    let user = stack.sign_up("leaver", PASSWORD);
    let token = token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    let second = token_of(&log_in_from(&stack, "127.0.0.3", CHROME, &user, PASSWORD));
    let (_, friend) = stack.user_with_token("friend", PASSWORD);
    let shared = png(20);
    let upload = |token: &str, bytes: &[u8]| -> String {
        let (content_type, body) = multipart(&[], Some(("image", "p.png", bytes)));
        let reply = stack.client().request(
            "POST",
            "/uploadProfilePic",
            &[("Content-Type", &content_type), ("Authorization", &format!("Bearer {token}"))],
            &body,
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["data"]["avatar_url"].as_str().expect("avatar_url").to_owned()
    };
    let shared_url = upload(&token, &shared);
    assert_eq!(upload(&friend, &shared), shared_url);
    history_of_at_least(&stack, &token, 2);
    let mut mysql = stack.mysql();
    let old_id: u64 = mysql.exec_first("SELECT id FROM users WHERE username = ?", (&user,)).unwrap().unwrap();

    let typo =
        bearer_post(&stack, &token, "/deleteAccount", &[("password", PASSWORD), ("confirm", "someone")]);
    assert_eq!((typo.status, typo.code()), (400, 19), "{}", typo.text());
    let wrong = bearer_post(
        &stack,
        &token,
        "/deleteAccount",
        &[("password", "not the password"), ("confirm", &user)],
    );
    assert_eq!((wrong.status, wrong.code()), (401, 6));
    let deleted =
        bearer_post(&stack, &token, "/deleteAccount", &[("password", PASSWORD), ("confirm", &user)]);
    assert_eq!(deleted.status, 200, "{}", deleted.text());

    for t in [&token, &second] {
        assert_eq!(bearer_get(&stack, t, "/profile").status, 401, "its tokens fail");
    }
    for table in ["users", "credentials", "logins", "known_devices"] {
        let column = if table == "users" { "id" } else { "user_id" };
        let n: u64 = mysql
            .exec_first(format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?"), (old_id,))
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "{table} keeps nothing of it");
    }
    assert_eq!(stack.client().get(&shared_url).status, 200, "the friend's picture still serves");
    // The name is free again, and the new account starts with nothing.
    let again = token_of(&{
        stack.client().api_post("/signUp", &[("username", &user), ("password", PASSWORD)]);
        log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD)
    });
    assert!(history_of_at_least(&stack, &again, 1).len() == 1);
    assert_eq!(sessions(&stack, &again).len(), 1);

    // A picture only the deleted account used stops being served.
    let (alone_user, alone) = stack.user_with_token("alone", PASSWORD);
    let own_url = upload(&alone, &png_with_text(20, "only mine"));
    let gone =
        bearer_post(&stack, &alone, "/deleteAccount", &[("password", PASSWORD), ("confirm", &alone_user)]);
    assert_eq!(gone.status, 200);
    assert_eq!(stack.client().get(&own_url).status, 404);
}

#[test]
fn a_session_that_idled_out_is_not_listed_and_leaves_no_metadata_behind() {
    const IDLE_SECS: u64 = 3;
    let stack = Stack::start_with(Options::default().back("--session-idle-secs", IDLE_SECS));
    let user = stack.sign_up("idler", PASSWORD);
    let idle = token_of(&log_in_from(&stack, "127.0.0.2", CHROME, &user, PASSWORD));
    thread::sleep(Duration::from_secs(IDLE_SECS - 1));
    let active = token_of(&log_in_from(&stack, "127.0.0.3", FIREFOX, &user, PASSWORD));
    thread::sleep(Duration::from_secs(2));
    assert_eq!(bearer_get(&stack, &idle, "/profile").status, 401, "idled out");
    let listed = sessions(&stack, &active);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["browser"], "Firefox");
    let mut redis = stack.redis();
    let meta: Vec<String> = util::redis_keys(&mut redis, &stack.redis_prefix)
        .into_iter()
        .filter(|k| k.contains(":smeta:"))
        .collect();
    assert_eq!(meta.len(), 1, "only the live session's metadata is kept: {meta:?}");
}

#[test]
fn a_log_in_refused_by_the_successful_log_in_limit_is_recorded_as_throttled() {
    let stack = Stack::start_with(Options::default().back("--logins-per-user", "2/600"));
    let user = stack.sign_up("limited", PASSWORD);
    let token = token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    token_of(&log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD));
    let refused = log_in_from(&stack, "127.0.0.2", FIREFOX, &user, PASSWORD);
    assert_eq!((refused.status, refused.code()), (429, 7), "{}", refused.text());
    let logins = history_of_at_least(&stack, &token, 3);
    let outcomes: Vec<&str> = logins.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["throttled", "success", "success"], "{logins:?}");
    assert_eq!(sessions(&stack, &token).len(), 2, "the refused log-in opened no session");
}
