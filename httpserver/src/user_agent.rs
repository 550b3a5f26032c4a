//! A `User-Agent` told in words a person recognises: "Firefox on Linux".
//!
//! The phone's approval page shows which browser and system the desktop
//! asking to be logged in runs, so a person can notice a code that is not
//! the one on their own screen. This is a plain look-up of well-known
//! tokens, in the order that tells the browsers apart (Edge and Opera say
//! "Chrome", Chrome says "Safari"); anything else is "an unknown browser".

/// The browser and the operating system a `User-Agent` names.
pub fn describe(user_agent: &str) -> (&'static str, &'static str) {
    (browser(user_agent), os(user_agent))
}

fn browser(ua: &str) -> &'static str {
    const BROWSERS: [(&str, &str); 8] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ];
    BROWSERS.iter().find(|(token, _)| ua.contains(token)).map_or("an unknown browser", |(_, name)| name)
}

fn os(ua: &str) -> &'static str {
    const SYSTEMS: [(&str, &str); 8] = [
        ("Windows", "Windows"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Android", "Android"),
        ("CrOS", "ChromeOS"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ];
    SYSTEMS.iter().find(|(token, _)| ua.contains(token)).map_or("an unknown system", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_browsers_are_named_with_their_systems() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
                ("Chrome", "Linux"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36 Edg/120.0",
                ("Edge", "Windows"),
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                ("Firefox", "Linux"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 Version/17.2 Safari/605.1.15",
                ("Safari", "macOS"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1",
                ("Safari", "iOS"),
            ),
            ("curl/8.5.0", ("an unknown browser", "an unknown system")),
            ("", ("an unknown browser", "an unknown system")),
        ];
        for (ua, expected) in cases {
            assert_eq!(describe(ua), expected, "{ua}");
        }
    }
}
