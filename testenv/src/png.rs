//! Valid PNG pictures made in the tests, so that a test's uploads are
//! pictures tcpserver accepts and, with [`with_text`], bytes (and so file
//! names and counts in the shared `avatars` table) of that test alone.

/// A valid `size`×`size` RGB PNG of a diagonal gradient, written with stored
/// (uncompressed) deflate blocks and real checksums.
pub fn gradient(size: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..size {
        raw.push(0); // filter: none
        for x in 0..size {
            let t = (x + y) * 255 / (2 * size.max(1));
            raw.extend_from_slice(&[(92 + t / 3) as u8, (124 - t / 4) as u8, (250 - t / 5) as u8]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&size.to_be_bytes());
    ihdr.extend_from_slice(&size.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr.as_slice()), (b"IDAT", &zlib), (b"IEND", &[])] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    png
}

/// `png` with a `tEXt` chunk holding `text` after its header: the same
/// picture, in bytes that belong to `text` alone.
///
/// # Panics
///
/// When `png` is too short to hold a PNG signature and header.
pub fn with_text(png: &[u8], text: &str) -> Vec<u8> {
    // The signature (8 bytes) and the IHDR chunk (12 + 13).
    const AFTER_IHDR: usize = 33;
    assert!(png.len() > AFTER_IHDR, "not a PNG: {} bytes", png.len());
    let mut chunk = Vec::new();
    chunk.extend_from_slice(&(text.len() as u32 + 8).to_be_bytes());
    chunk.extend_from_slice(b"tEXtComment\0");
    chunk.extend_from_slice(text.as_bytes());
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    let mut with_text = png[..AFTER_IHDR].to_vec();
    with_text.extend_from_slice(&chunk);
    with_text.extend_from_slice(&png[AFTER_IHDR..]);
    with_text
}

/// CRC-32 (ISO-HDLC) as PNG chunks carry it, bit by bit: a few pictures a test.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Adler-32, the zlib stream's checksum.
fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_their_published_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn the_text_lands_after_the_header_and_the_rest_is_unchanged() {
        let plain = gradient(3);
        let marked = with_text(&plain, "mine");
        assert_eq!(&marked[..33], &plain[..33]);
        assert_eq!(&marked[33..37], &12u32.to_be_bytes());
        assert_eq!(&marked[37..53], b"tEXtComment\0mine");
        assert_eq!(&marked[57..], &plain[33..]);
        assert_ne!(with_text(&plain, "yours"), marked);
    }
}
