//! The QR image of a scan-to-log-in code, drawn here as SVG.
//!
//! The image encodes the absolute URL of the phone's page, `/qr/<key>`, on
//! this site; it is drawn by the `qrcode` crate in the server, so the page
//! needs nothing from elsewhere and works without script. The URL's origin
//! comes from the request's `Host` header, checked to be a plain host name
//! or address with an optional port (it is the site the browser is on).

use qrcode::QrCode;
use qrcode::render::svg;

/// Longest `Host` value used in a code's URL: any real host name fits in 253
/// characters, plus a port.
pub const MAX_HOST_LEN: usize = 260;

/// Side of the drawn image in pixels, at least: large enough for a phone's
/// camera across a desk, small enough to sit beside the log-in form.
const MIN_SIDE: u32 = 232;

/// The phone's URL for `key`, on the site `host` names over `scheme`; `None`
/// for a `Host` that is not a plain host (and port).
pub fn phone_url(scheme: &str, host: &str, key: &str) -> Option<String> {
    let plain = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plain.then(|| format!("{scheme}://{host}/qr/{key}"))
}

/// The SVG image of a QR code encoding `url`, or `None` if it does not fit
/// in a QR code (it always does at these lengths).
pub fn svg(url: &str) -> Option<String> {
    let code = QrCode::new(url.as_bytes()).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(MIN_SIDE, MIN_SIDE)
            .quiet_zone(true)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hosts_make_a_url() {
        assert_eq!(phone_url("http", "127.0.0.1:1088", "ab").as_deref(), Some("http://127.0.0.1:1088/qr/ab"));
        assert_eq!(phone_url("https", "[::1]:8443", "ab").as_deref(), Some("https://[::1]:8443/qr/ab"));
        for bad in ["", "evil.com/x", "a b", "evil.com\"><script>", &"a".repeat(MAX_HOST_LEN + 1)] {
            assert_eq!(phone_url("http", bad, "ab"), None, "{bad}");
        }
    }

    #[test]
    fn the_image_is_an_svg_document() {
        let image = svg(&format!("http://127.0.0.1:1088/qr/{}", "a".repeat(64))).unwrap();
        assert!(image.starts_with("<?xml") && image.contains("<svg") && image.ends_with("</svg>"), "{image}");
    }
}
