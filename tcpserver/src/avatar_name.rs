//! Picture names: `<sha256 hex>.<extension>`, chosen by the server from the
//! bytes, never by the uploader.
//!
//! A name is the key of a picture everywhere: in `users.avatar`, in the
//! `avatars` and `avatar_bytes` tables, in the `GetAvatar` request and in the
//! URL httpserver serves it at. Since it is a digest of the bytes, two uploads
//! of the same picture share one name (and one stored copy), and the bytes
//! behind a name never change, which is what lets every cache keep them
//! forever.

use sha2::{Digest, Sha256};

use crate::image::ImageKind;

/// Hex digits of a name's digest: a SHA-256.
pub const DIGEST_HEX_LEN: usize = 64;

/// The name a picture gets: `<sha256 hex>.<extension>`.
pub fn of(bytes: &[u8], kind: ImageKind) -> String {
    format!("{}.{}", hex::encode(Sha256::digest(bytes)), kind.extension())
}

/// The format a well-formed name says its picture is in, or `None` for a
/// string that is no name [`of`] gives (wrong length, upper-case hex, an
/// unknown extension, anything else appended): such a name is never looked up.
pub fn kind(name: &str) -> Option<ImageKind> {
    let (digest, extension) = name.split_once('.')?;
    let is_digest =
        digest.len() == DIGEST_HEX_LEN && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ImageKind::from_extension(extension).filter(|_| is_digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::samples;

    #[test]
    fn a_name_is_the_digest_of_the_bytes_and_says_their_format() {
        let png = samples::png();
        let name = of(&png, ImageKind::Png);
        assert_eq!(name, format!("{}.png", hex::encode(Sha256::digest(&png))));
        assert_eq!(kind(&name), Some(ImageKind::Png));
        assert_eq!(kind(&format!("{}.webp", "ab".repeat(32))), Some(ImageKind::Webp));
        assert_eq!(kind(&format!("{}.jpg", "09".repeat(32))), Some(ImageKind::Jpeg));
    }

    #[test]
    fn only_names_this_module_gives_are_names() {
        let digest = "ab".repeat(32);
        for other in [
            format!("{digest}.exe"),
            format!("{digest}.svg"),
            format!("{digest}.PNG"),
            format!("{}.png", "AB".repeat(32)),
            format!("{}.png", "ab".repeat(31)),
            format!("{}a.png", "ab".repeat(32)),
            format!("{digest}.png.bak"),
            format!("{digest}png"),
            format!("../{digest}.png"),
            String::new(),
            ".png".into(),
        ] {
            assert_eq!(kind(&other), None, "{other}");
        }
    }
}
