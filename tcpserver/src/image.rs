//! Recognises uploaded pictures by their content, never by a name or a claimed
//! content type.
//!
//! Each format is identified by its magic bytes and then walked far enough to
//! find its dimensions and to see that its outer structure holds together
//! (PNG chunks up to `IEND`, JPEG segments up to the scan, GIF blocks up to the
//! trailer, the RIFF size of a WebP). This is no decoder: it refuses files that are plainly
//! not images, truncated uploads and absurd dimensions, so that what is stored
//! and later served under an image type really is one.

use std::fmt;

/// Largest width or height accepted. A small file can declare a huge canvas (a
/// "decompression bomb" for whoever displays it); 8192 px keeps a decoded
/// picture under 256 MiB while allowing any camera photo that fits the size cap.
pub const MAX_DIMENSION: u32 = 8192;

/// The picture formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// Portable Network Graphics.
    Png,
    /// JPEG (JFIF or Exif).
    Jpeg,
    /// GIF87a or GIF89a.
    Gif,
    /// WebP (lossy, lossless or extended).
    Webp,
}

impl ImageKind {
    /// The file extension for this format, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Png => "png",
            ImageKind::Jpeg => "jpg",
            ImageKind::Gif => "gif",
            ImageKind::Webp => "webp",
        }
    }

    /// The format whose [`ImageKind::extension`] this is.
    pub fn from_extension(extension: &str) -> Option<ImageKind> {
        ImageKind::ALL.into_iter().find(|kind| kind.extension() == extension)
    }

    /// The media type pictures of this format are served with.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageKind::Png => "image/png",
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Gif => "image/gif",
            ImageKind::Webp => "image/webp",
        }
    }

    /// Every format.
    pub const ALL: [ImageKind; 4] = [ImageKind::Png, ImageKind::Jpeg, ImageKind::Gif, ImageKind::Webp];
}

/// Why bytes were not accepted as a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// The bytes start like none of the accepted formats.
    UnknownFormat,
    /// The bytes start like this format but its structure is broken or truncated.
    Malformed(ImageKind),
    /// A width or height of zero or above [`MAX_DIMENSION`].
    Dimensions {
        /// Declared width in pixels.
        width: u32,
        /// Declared height in pixels.
        height: u32,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::UnknownFormat => f.write_str("The picture must be a PNG, JPEG, GIF or WebP image."),
            ImageError::Malformed(kind) => {
                write!(f, "The {} file is damaged or incomplete.", kind.extension().to_uppercase())
            }
            ImageError::Dimensions { width, height } => write!(
                f,
                "A picture of {width}x{height} pixels is not accepted: each side must be 1 to {MAX_DIMENSION}."
            ),
        }
    }
}

impl std::error::Error for ImageError {}

/// Identifies and checks a picture.
///
/// # Errors
///
/// [`ImageError`] when the bytes are not an acceptable PNG, JPEG, GIF or WebP.
pub fn inspect(bytes: &[u8]) -> Result<ImageKind, ImageError> {
    let (kind, dims) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        (ImageKind::Png, png(bytes))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        (ImageKind::Jpeg, jpeg(bytes))
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        (ImageKind::Gif, gif(bytes))
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        (ImageKind::Webp, webp(bytes))
    } else {
        return Err(ImageError::UnknownFormat);
    };
    let (width, height) = dims.ok_or(ImageError::Malformed(kind))?;
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(ImageError::Dimensions { width, height });
    }
    Ok(kind)
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(*b.get(at..)?.first_chunk()?)))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(at..)?.first_chunk()?))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(*b.get(at..)?.first_chunk()?)))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let [x, y, z] = *b.get(at..)?.first_chunk::<3>()?;
    Some(u32::from_le_bytes([x, y, z, 0]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(at..)?.first_chunk()?))
}

/// Walks the chunks: `IHDR` first, at least one `IDAT`, and `IEND` last.
fn png(b: &[u8]) -> Option<(u32, u32)> {
    let mut at = 8;
    let mut dims = None;
    let mut seen_data = false;
    loop {
        let len = be32(b, at)? as usize;
        let kind = b.get(at + 4..at + 8)?;
        let end = at.checked_add(12)?.checked_add(len)?;
        if end > b.len() || !kind.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        match kind {
            b"IHDR" if at == 8 && len == 13 => dims = Some((be32(b, at + 8)?, be32(b, at + 12)?)),
            _ if at == 8 => return None,
            b"IDAT" => seen_data = true,
            b"IEND" => return (end == b.len() && seen_data).then_some(dims).flatten(),
            _ => {}
        }
        at = end;
    }
}

/// Walks the marker segments from SOI to the first SOS. Each segment must lie
/// inside the file, and the fields read from one must lie inside its declared
/// length: a frame header (SOFn) is `8 + 3 * components` bytes, a scan header
/// (SOS) `6 + 2 * components`. Exactly one frame header must come before the
/// scan, and an EOI marker must follow the scan header.
fn jpeg(b: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    let mut dims = None;
    loop {
        if *b.get(at)? != 0xFF {
            return None;
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while *b.get(at + 1)? == 0xFF {
            at += 1;
        }
        let marker = *b.get(at + 1)?;
        at += 2;
        match marker {
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 | 0xD9 | 0x00 => return None,
            _ => {}
        }
        // The segment, its two length bytes included.
        let len = be16(b, at)? as usize;
        let segment = b.get(at..at.checked_add(len)?)?;
        match marker {
            // The entropy-coded scan follows its header; a complete file ends it with EOI.
            0xDA => {
                let components = usize::from(*segment.get(2)?);
                if components == 0 || len != 6 + 2 * components {
                    return None;
                }
                let scan = &b[at + len..];
                return scan.windows(2).any(|w| w == [0xFF, 0xD9]).then_some(dims).flatten();
            }
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let components = usize::from(*segment.get(7)?);
                if dims.is_some() || components == 0 || len != 8 + 3 * components {
                    return None;
                }
                dims = Some((be16(segment, 5)?, be16(segment, 3)?));
            }
            _ if len < 2 => return None,
            _ => {}
        }
        at += len;
    }
}

/// Header and logical screen, then the block stream: extensions and images,
/// each ending in a run of data sub-blocks, up to the trailer, which must be the
/// last byte. At least one image is required.
///
/// Checking only the header and the last byte would accept any text that starts
/// with ten bytes of GIF header and ends in `;`, an HTML page for instance.
fn gif(b: &[u8]) -> Option<(u32, u32)> {
    let dims = (le16(b, 6)?, le16(b, 8)?);
    let mut at = 13 + gif_color_table_len(*b.get(10)?);
    let mut seen_image = false;
    loop {
        match *b.get(at)? {
            // Trailer.
            0x3B => return (at + 1 == b.len() && seen_image).then_some(dims),
            // Extension: introducer, label, then sub-blocks.
            0x21 => at = gif_sub_blocks(b, at + 2)?,
            // Image: a 10-byte descriptor whose last byte flags a local color
            // table, the table, the LZW minimum code size, then sub-blocks.
            0x2C => {
                let table = gif_color_table_len(*b.get(at + 9)?);
                at = gif_sub_blocks(b, at + 10 + table + 1)?;
                seen_image = true;
            }
            _ => return None,
        }
    }
}

/// Bytes of the color table that a GIF flags byte announces: bit 7 says there
/// is one, bits 0-2 give its size as 2^(n+1) RGB entries.
fn gif_color_table_len(flags: u8) -> usize {
    if flags & 0x80 == 0 { 0 } else { 3 << ((flags & 0x07) + 1) }
}

/// Skips a run of GIF data sub-blocks (a length byte, then that many bytes,
/// until a zero length) starting at `at`; returns the position after it.
fn gif_sub_blocks(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = usize::from(*b.get(at)?);
        at += 1 + len;
        if len == 0 {
            return Some(at);
        }
    }
}

/// RIFF size consistent with the file, then the first chunk's frame header.
fn webp(b: &[u8]) -> Option<(u32, u32)> {
    let riff_len = (le32(b, 4)? as usize).checked_add(8)?;
    let chunk_len = le32(b, 16)? as usize;
    if riff_len > b.len() || 20usize.checked_add(chunk_len)? > riff_len {
        return None;
    }
    let data = b.get(20..20 + chunk_len)?;
    match b.get(12..16)? {
        b"VP8 " => {
            if data.get(3..6)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            Some((le16(data, 6)? & 0x3FFF, le16(data, 8)? & 0x3FFF))
        }
        b"VP8L" => {
            if *data.first()? != 0x2F {
                return None;
            }
            let bits = le32(data, 1)?;
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => Some((le24(data, 4)? + 1, le24(data, 7)? + 1)),
        _ => None,
    }
}

/// Small valid images, shared with the integration tests' expectations.
#[cfg(test)]
pub(crate) mod samples {
    /// A 1x1 PNG.
    pub fn png() -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut b, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]);
        chunk(&mut b, b"IDAT", &[0x78, 0x9C, 0x62, 0, 1, 0, 0, 5, 0, 1]);
        chunk(&mut b, b"IEND", &[]);
        b
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0, 0, 0, 0]); // CRC: not checked.
    }

    /// A 2x3 baseline JPEG skeleton: SOI, APP0, SOF0, SOS, scan data, EOI.
    pub fn jpeg() -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8];
        b.extend_from_slice(&[0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
        b.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 0, 3, 0, 2, 1, 1, 0x11, 0]);
        b.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0x3F, 0]);
        b.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9]);
        b
    }

    /// A 1x1 GIF89a.
    pub fn gif() -> Vec<u8> {
        let mut b = b"GIF89a".to_vec();
        b.extend_from_slice(&[1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3B]);
        b
    }

    /// A 16x9 lossless WebP header.
    pub fn webp() -> Vec<u8> {
        let bits: u32 = 15 | (8 << 14);
        let mut data = vec![0x2F];
        data.extend_from_slice(&bits.to_le_bytes());
        data.extend_from_slice(&[0; 3]);
        let mut b = b"RIFF".to_vec();
        b.extend_from_slice(&((4 + 8 + data.len()) as u32).to_le_bytes());
        b.extend_from_slice(b"WEBPVP8L");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&data);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_recognised() {
        assert_eq!(inspect(&samples::png()), Ok(ImageKind::Png));
        assert_eq!(inspect(&samples::jpeg()), Ok(ImageKind::Jpeg));
        assert_eq!(inspect(&samples::gif()), Ok(ImageKind::Gif));
        assert_eq!(inspect(&samples::webp()), Ok(ImageKind::Webp));
    }

    #[test]
    fn other_content_is_unknown() {
        for bad in
            [&b""[..], b"hello, world", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"%PDF-1.7", b"GIF"]
        {
            assert_eq!(inspect(bad), Err(ImageError::UnknownFormat), "{bad:?}");
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        for (sample, kind) in [
            (samples::png(), ImageKind::Png),
            (samples::jpeg(), ImageKind::Jpeg),
            (samples::gif(), ImageKind::Gif),
            (samples::webp(), ImageKind::Webp),
        ] {
            for n in 0..sample.len() {
                assert!(inspect(&sample[..n]).is_err(), "{kind:?} cut at {n} was accepted");
            }
        }
    }

    #[test]
    fn a_magic_number_alone_is_malformed() {
        let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
        fake.extend_from_slice(b"this is not a chunk stream");
        assert_eq!(inspect(&fake), Err(ImageError::Malformed(ImageKind::Png)));
        assert_eq!(inspect(&[0xFF, 0xD8, 0xFF, 0xFF, 0xFF]), Err(ImageError::Malformed(ImageKind::Jpeg)));
    }

    /// Regression: a GIF header on other content, ending in the trailer byte,
    /// was accepted as a GIF (found while triaging the `image` fuzz target).
    #[test]
    fn gif_header_on_html_is_refused() {
        let mut polyglot = b"GIF89a\x01\x00\x01\x00".to_vec();
        polyglot.extend_from_slice(b"<html><script>alert(1)</script></html>;");
        assert_eq!(inspect(&polyglot), Err(ImageError::Malformed(ImageKind::Gif)));
        // Real block structure but no image, or bytes after the trailer.
        let no_image = b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x21\xFE\x02hi\x00\x3B";
        assert_eq!(inspect(no_image), Err(ImageError::Malformed(ImageKind::Gif)));
        let mut trailing = samples::gif();
        trailing.extend_from_slice(b"<p>;");
        assert_eq!(inspect(&trailing), Err(ImageError::Malformed(ImageKind::Gif)));
    }

    /// Regression: a segment whose length runs past the end of the file must
    /// not be skipped over or read from.
    #[test]
    fn jpeg_segment_length_past_the_end_is_refused() {
        let mut b = samples::jpeg();
        // APP0's length, then the frame header's, each pointing past the end.
        for at in [4, 22] {
            let mut long = b.clone();
            long[at..at + 2].copy_from_slice(&0xFFF0u16.to_be_bytes());
            assert_eq!(inspect(&long), Err(ImageError::Malformed(ImageKind::Jpeg)), "length at {at}");
        }
        // A length below 2 cannot even cover itself.
        b[4..6].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(inspect(&b), Err(ImageError::Malformed(ImageKind::Jpeg)));
    }

    /// Regression: the frame header's size fields were read at fixed offsets
    /// whatever the segment's length, so a frame header declared too short took
    /// its "dimensions" from the bytes of the markers after it, and the file was
    /// accepted with a size it never stated.
    #[test]
    fn jpeg_frame_header_shorter_than_its_fields_is_refused() {
        let mut b = vec![0xFF, 0xD8];
        // SOF0 of length 4 (precision and one byte of height), a TEM marker,
        // then a scan: the old walk read 255 x 511 out of the TEM marker.
        b.extend_from_slice(&[0xFF, 0xC0, 0, 4, 8, 0, 0xFF, 0x01]);
        b.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0x3F, 0, 0x12, 0xFF, 0xD9]);
        assert_eq!(inspect(&b), Err(ImageError::Malformed(ImageKind::Jpeg)));
        // A frame header whose length disagrees with its component count.
        let mut odd = samples::jpeg();
        odd[29] = 2; // Two components announced, one present.
        assert_eq!(inspect(&odd), Err(ImageError::Malformed(ImageKind::Jpeg)));
    }

    /// Regression: the end-of-image marker was looked for from the start of the
    /// scan header, so the header's own bytes could stand in for it.
    #[test]
    fn jpeg_end_marker_inside_the_scan_header_is_not_the_end() {
        let mut b = samples::jpeg();
        b.truncate(b.len() - 2); // No EOI after the scan data.
        let sos = b.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        b[sos + 5..sos + 7].copy_from_slice(&[0xFF, 0xD9]); // Component selector and tables.
        assert_eq!(inspect(&b), Err(ImageError::Malformed(ImageKind::Jpeg)));
    }

    #[test]
    fn jpeg_scan_needs_a_frame_header_before_it_and_only_one() {
        let b = samples::jpeg();
        let sof = b.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let mut no_frame = b.clone();
        no_frame.drain(sof..sof + 13);
        assert_eq!(inspect(&no_frame), Err(ImageError::Malformed(ImageKind::Jpeg)));
        let mut two = b.clone();
        let frame: Vec<u8> = b[sof..sof + 13].to_vec();
        two.splice(sof..sof, frame);
        assert_eq!(inspect(&two), Err(ImageError::Malformed(ImageKind::Jpeg)));
    }

    #[test]
    fn gif_extensions_and_local_color_tables_are_walked() {
        let mut b = b"GIF89a\x02\x00\x01\x00\x00\x00\x00".to_vec();
        // Graphic control extension, then a comment split over two sub-blocks.
        b.extend_from_slice(&[0x21, 0xF9, 4, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0x21, 0xFE, 2, b'h', b'i', 1, b'!', 0]);
        // An image with a local color table of 2 entries.
        b.extend_from_slice(&[0x2C, 0, 0, 0, 0, 2, 0, 1, 0, 0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[2, 2, 0x4C, 1, 0, 0x3B]);
        assert_eq!(inspect(&b), Ok(ImageKind::Gif));
        for n in 0..b.len() {
            assert!(inspect(&b[..n]).is_err(), "cut at {n} was accepted");
        }
    }

    #[test]
    fn huge_dimensions_are_refused() {
        let mut png = samples::png();
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        assert_eq!(inspect(&png), Err(ImageError::Dimensions { width: 100_000, height: 1 }));
        let mut gif = samples::gif();
        gif[6..8].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(inspect(&gif), Err(ImageError::Dimensions { width: 0, .. })));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let samples = [samples::png(), samples::jpeg(), samples::gif(), samples::webp()];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for round in 0..50_000 {
            let mut b = samples[round % 4].clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % b.len();
                b[at] = (state >> 32) as u8;
            }
            let _ = inspect(&b);
        }
    }
}
