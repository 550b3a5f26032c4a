//! The account-security parts of the home page: the device list, the log-in
//! history, and the new-sign-in notice. Every value from the back end (and so
//! from a User-Agent or an address) goes through [`escape`]; the forms carry
//! the CSRF token.

use proto::{DeviceSession, LoginEntry};

use super::{Html, escape};

/// `unix` seconds as `YYYY-MM-DD HH:MM UTC`.
pub fn time_text(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let (y, m, d) = hostsupport::calendar::civil_from_days(days);
    let secs = unix % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

/// The list of signed-in devices, each with a sign-out button (not the current one).
pub fn devices(sessions: &[DeviceSession], csrf: &str) -> Html {
    let mut out = String::from("<ul class=\"devices\" id=\"devices\">");
    for s in sessions {
        let action = if s.current {
            "<span class=\"current\">This device</span>".to_owned()
        } else {
            revoke_form(&s.id, csrf, "Sign out")
        };
        out.push_str(&format!(
            "<li class=\"device\" data-id=\"{}\"><div><strong>{} on {}</strong> · {}\
             <br><span class=\"hint\">Signed in {} · last used {}</span></div>{action}</li>",
            escape(&s.id),
            escape(&s.browser),
            escape(&s.os),
            escape(&s.ip),
            escape(&time_text(s.created)),
            escape(&time_text(s.last_used)),
        ));
    }
    out.push_str("</ul>");
    Html(out)
}

/// A one-button form that signs out the session `id`.
fn revoke_form(id: &str, csrf: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/sessions/revoke\" class=\"inline\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"id\" value=\"{}\">\
         <button type=\"submit\" class=\"secondary\">{}</button></form>",
        escape(csrf),
        escape(id),
        escape(label)
    )
}

/// The list of the latest log-in attempts.
pub fn history(logins: &[LoginEntry]) -> Html {
    let mut out = String::from("<ul class=\"history\" id=\"history\">");
    for l in logins {
        let mut outcome = escape(&l.outcome.replace('_', " "));
        if l.new_device {
            outcome.push_str(" <span class=\"flag\">new device</span>");
        }
        if l.suspicious {
            outcome.push_str(" <span class=\"flag warn\">suspicious</span>");
        }
        out.push_str(&format!(
            "<li class=\"login\"><div><strong>{}</strong> · {} on {} · {}\
             <br><span class=\"hint\">{} · {outcome}</span></div></li>",
            escape(&time_text(l.time)),
            escape(&l.browser),
            escape(&l.os),
            escape(&l.ip),
            escape(&l.method),
        ));
    }
    out.push_str("</ul>");
    Html(out)
}

/// The notice of new sign-ins into this account since the current session
/// was opened (the history is newest first: the entries before the current
/// session's own, or, when that is older than the list, those since its
/// creation), each with "sign out that device" (while it is signed in) and
/// "change password" one click away.
pub fn new_sign_ins(logins: &[LoginEntry], sessions: &[DeviceSession], csrf: &str) -> Html {
    let Some(current) = sessions.iter().find(|s| s.current) else { return Html::default() };
    let mut out = String::new();
    let since = logins.iter().take_while(|l| l.session != current.id);
    for l in since.filter(|l| l.new_device && l.outcome == "success" && l.time >= current.created) {
        let live = sessions.iter().any(|s| s.id == l.session);
        let sign_out =
            if live { revoke_form(&l.session, csrf, "Sign out that device") } else { String::new() };
        out.push_str(&format!(
            "<div class=\"alert warn new-sign-in\" role=\"alert\"><p>New sign-in: {} on {} from {} at {}. \
             Not you? Sign out that device and change your password.</p>{sign_out}\
             <a class=\"button\" href=\"#change-password\">Change password</a></div>",
            escape(&l.browser),
            escape(&l.os),
            escape(&l.ip),
            escape(&time_text(l.time)),
        ));
    }
    Html(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(browser: &str, session: &str, time: u64) -> LoginEntry {
        LoginEntry {
            time,
            ip: "127.0.0.3".into(),
            browser: browser.into(),
            os: "Linux".into(),
            method: "password".into(),
            outcome: "success".into(),
            new_device: true,
            suspicious: false,
            session: session.into(),
        }
    }

    fn device(id: &str, current: bool) -> DeviceSession {
        DeviceSession {
            id: id.into(),
            browser: "Firefox".into(),
            os: "Linux".into(),
            ip: "127.0.0.2".into(),
            created: 100,
            last_used: 100,
            current,
        }
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(time_text(0), "1970-01-01 00:00 UTC");
        assert_eq!(time_text(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn the_notice_names_other_new_devices_escaped_and_offers_both_actions() {
        let sessions = [device("me", true), device("other", false)];
        let logins = [entry("<script>", "other", 200), entry("Chrome", "me", 150), entry("Old", "x", 50)];
        let html = new_sign_ins(&logins, &sessions, "tok").into_string();
        assert!(html.contains("New sign-in: &lt;script&gt; on Linux from 127.0.0.3"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(html.contains("value=\"other\"") && html.contains("href=\"#change-password\""));
        assert!(!html.contains("Chrome") && !html.contains("Old"), "own and older sign-ins are not news");
    }
}
