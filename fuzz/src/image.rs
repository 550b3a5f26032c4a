//! Target `image`: the picture check, [`tcpserver::image::inspect`].
//!
//! tcpserver runs it on every uploaded avatar before storing it, so it reads
//! arbitrary bytes from any signed-in user. It must never panic or loop, and
//! what it accepts must at least start with the magic bytes of the kind it
//! names, since that kind picks the file extension and the served content type.

use tcpserver::image::{ImageError, ImageKind, MAX_DIMENSION, inspect};

/// Inspects `data` and checks the properties above.
///
/// # Panics
///
/// When the check panics or a property breaks.
pub fn run(data: &[u8]) {
    match inspect(data) {
        Ok(kind) => {
            let magic: &[u8] = match kind {
                ImageKind::Png => b"\x89PNG\r\n\x1a\n",
                ImageKind::Jpeg => &[0xFF, 0xD8, 0xFF],
                ImageKind::Gif => b"GIF8",
                ImageKind::Webp => b"RIFF",
            };
            assert!(data.starts_with(magic), "accepted as {kind:?} without its magic bytes");
        }
        Err(ImageError::Dimensions { width, height }) => {
            let bad = |side: u32| side == 0 || side > MAX_DIMENSION;
            assert!(bad(width) || bad(height), "{width}x{height} refused as a bad size");
        }
        Err(ImageError::UnknownFormat | ImageError::Malformed(_)) => {}
    }
}
