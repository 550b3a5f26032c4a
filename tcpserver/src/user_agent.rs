//! Browser and operating system, read from a User-Agent header.
//!
//! The device list and the log-in history show "Firefox on Linux", not the raw
//! header: a person recognises their devices by those two words. The header's
//! grammar is a history of browsers pretending to be each other (every
//! Chromium says `Safari`, Edge and Opera say `Chrome`), so the checks run from
//! the most specific token to the least. Hand-written rather than a crate:
//! the maintained parsers (`woothee`, `uaparser`) carry regex sets of hundreds
//! of kilobytes for thousands of bots and devices, while this needs a dozen
//! names. Anything not recognised is "Unknown"; the header itself is never
//! shown or stored beyond [`MAX_STORED_LEN`] bytes.

/// Bytes of a User-Agent that are looked at: real ones are under 200, and the
/// product tokens that decide are near the front or the end of those.
pub const MAX_STORED_LEN: usize = proto::MAX_USER_AGENT_LEN;

/// What a session or attempt was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// "Firefox", "Chrome", "Safari", "Edge", "Opera", "Samsung Internet",
    /// "curl", or "Unknown".
    pub browser: &'static str,
    /// "Windows", "macOS", "iOS", "Android", "Linux", "ChromeOS", or "Unknown".
    pub os: &'static str,
}

/// The name shown for anything not recognised.
pub const UNKNOWN: &str = "Unknown";

/// Reads the browser and OS of a User-Agent (`None`: the request had none).
pub fn parse(user_agent: Option<&str>) -> Device {
    let ua = user_agent.unwrap_or("");
    Device { browser: browser(ua), os: os(ua) }
}

fn browser(ua: &str) -> &'static str {
    // Most specific first: each later token also appears in the earlier ones' headers.
    const TOKENS: [(&str, &str); 12] = [
        ("Edg/", "Edge"),
        ("EdgA/", "Edge"),
        ("EdgiOS/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("FxiOS/", "Firefox"),
        ("Firefox/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("HeadlessChrome/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("curl/", "curl"),
    ];
    if let Some((_, name)) = TOKENS.iter().find(|(token, _)| ua.contains(token)) {
        return name;
    }
    if ua.contains("Safari/") && ua.contains("Version/") {
        return "Safari";
    }
    UNKNOWN
}

fn os(ua: &str) -> &'static str {
    // iOS and Android before macOS and Linux: iPads say "Mac OS X", Android says "Linux".
    if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        "iOS"
    } else if ua.contains("Android") {
        "Android"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("Linux") || ua.contains("X11") {
        "Linux"
    } else {
        UNKNOWN
    }
}

/// `value` cut to at most [`MAX_STORED_LEN`] bytes, on a character boundary.
pub fn bounded(value: &str) -> &str {
    if value.len() <= MAX_STORED_LEN {
        return value;
    }
    let mut end = MAX_STORED_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(ua: &str) -> (&'static str, &'static str) {
        let d = parse(Some(ua));
        (d.browser, d.os)
    }

    #[test]
    fn the_major_browsers_and_systems_are_told_apart() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                ("Firefox", "Linux"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                ("Chrome", "Windows"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
                ("Edge", "Windows"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                ("Safari", "macOS"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
                ("Safari", "iOS"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
                ("Chrome", "iOS"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
                ("Samsung Internet", "Android"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
                ("Chrome", "Android"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/105.0.0.0",
                ("Opera", "Windows"),
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                ("Chrome", "ChromeOS"),
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
                ("Chrome", "Linux"),
            ),
            ("curl/8.5.0", ("curl", UNKNOWN)),
        ];
        for (ua, expected) in cases {
            assert_eq!(seen(ua), expected, "{ua}");
        }
    }

    #[test]
    fn nothing_or_nonsense_is_unknown() {
        assert_eq!(parse(None), Device { browser: UNKNOWN, os: UNKNOWN });
        assert_eq!(seen("<script>alert(1)</script>"), (UNKNOWN, UNKNOWN));
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_STORED_LEN);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_STORED_LEN && cut.len() >= MAX_STORED_LEN - 1);
        assert_eq!(bounded("short"), "short");
    }
}
