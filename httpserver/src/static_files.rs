//! `GET /static/...`: the stylesheet, the icon and the script. (Pictures,
//! under `/static/avatars/`, are served from tcpserver by
//! [`crate::handlers::avatar`], never from this directory.)
//!
//! Path traversal is ruled out twice. The path is checked before it touches the
//! file system: only `[A-Za-z0-9._-]` segments that do not start with a dot, so
//! `..`, `%2e%2e`, backslashes and hidden files never match. Then the file is
//! resolved with `canonicalize` (following any symlink) and must still lie under
//! the canonical root. Only known file types are served, each with its exact
//! Content-Type.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Failure, HttpError};
use crate::response::Response;

/// Longest path under `/static/` accepted.
pub const MAX_STATIC_PATH_LEN: usize = 255;

/// The stylesheet and icon change with releases: an hour is a fair trade.
const MODEST: &str = "public, max-age=3600";

/// Serves files from one directory.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: PathBuf,
}

impl StaticFiles {
    /// Serves from `root`, which must exist.
    ///
    /// # Errors
    ///
    /// The I/O error from resolving `root`.
    pub fn new(root: &Path) -> std::io::Result<StaticFiles> {
        Ok(StaticFiles { root: root.canonicalize()? })
    }

    /// The response for `/static/<relative>`.
    ///
    /// # Errors
    ///
    /// 404 for anything that is not a servable file under the root.
    pub fn serve(&self, relative: &str) -> Result<Response, Failure> {
        let not_found = || Failure::http(HttpError::NotFound);
        let content_type = content_type(relative).filter(|_| is_safe(relative)).ok_or_else(not_found)?;
        let path = self.root.join(relative).canonicalize().map_err(|_| not_found())?;
        if !path.starts_with(&self.root) {
            return Err(not_found());
        }
        let file = File::open(&path).map_err(|_| not_found())?;
        let meta = file.metadata().map_err(|_| not_found())?;
        if !meta.is_file() {
            return Err(not_found());
        }
        let mut response =
            Response::new(200).file(content_type, file, meta.len()).header("Cache-Control", MODEST);
        if content_type.starts_with("image/svg") {
            // An SVG opened directly is a document: give it no power to run script.
            response =
                response.header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
        }
        Ok(response)
    }
}

/// True for `seg/seg/...` of `[A-Za-z0-9._-]`, no segment empty or starting with '.'.
fn is_safe(relative: &str) -> bool {
    relative.len() <= MAX_STATIC_PATH_LEN
        && relative.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// The Content-Type for the file types served; `None` for everything else.
fn content_type(relative: &str) -> Option<&'static str> {
    let (_, extension) = relative.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "css" => "text/css; charset=utf-8",
        // Only the site's own scripts (`qr.js`).
        "js" => "text/javascript; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (PathBuf, StaticFiles) {
        let dir = std::env::temp_dir().join(format!("um-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("root/img")).unwrap();
        std::fs::write(dir.join("root/style.css"), "body{}").unwrap();
        std::fs::write(dir.join("root/img/ab.png"), b"\x89PNG").unwrap();
        std::fs::write(dir.join("secret.css"), "secret").unwrap();
        #[cfg(unix)]
        {
            let _ = std::os::unix::fs::symlink(dir.join("secret.css"), dir.join("root/link.css"));
        }
        let files = StaticFiles::new(&dir.join("root")).unwrap();
        (dir, files)
    }

    #[test]
    fn serves_known_types_with_their_cache_policy() {
        let (_dir, files) = fixture();
        let css = files.serve("style.css").unwrap();
        assert_eq!(css.status, 200);
        let mut out = Vec::new();
        css.write_to(&mut out, false, true, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Type: text/css; charset=utf-8\r\n"));
        assert!(text.contains("Cache-Control: public, max-age=3600\r\n"));
        assert!(text.ends_with("body{}"));
        let mut out = Vec::new();
        files.serve("img/ab.png").unwrap().write_to(&mut out, false, true, true).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("Content-Type: image/png\r\n"));
    }

    #[test]
    fn traversal_hidden_files_and_symlinks_out_are_not_found() {
        let (_dir, files) = fixture();
        for path in [
            "../secret.css",
            "img/../../secret.css",
            "%2e%2e/secret.css",
            "..%2fsecret.css",
            "img/..\\..\\secret.css",
            ".hidden.css",
            "img//ab.png",
            "/etc/passwd.css",
            "link.css",
            "img",
            "style.css\0.png",
            "img/ab.svg",
            "nope.css",
        ] {
            assert!(files.serve(path).is_err(), "{path} must not be served");
        }
    }
}
