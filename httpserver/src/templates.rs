//! Page templates: HTML files in `html/` with `{{name}}` placeholders, read once at
//! start-up.
//!
//! Escaping is enforced by type: a slot takes an [`Html`] value, which is either
//! text passed through [`escape`] (the one escaping function), a fragment this
//! module builds from escaped parts, or another rendered template. Nothing else
//! can reach a page, so a user's nickname cannot turn into markup.

pub mod security;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The templates the server renders. Each is `html/<name>.html`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Page {
    /// The shell around every page: `{{title}}`, `{{content}}`.
    Layout,
    /// Log-in form.
    Login,
    /// Sign-up form.
    Signup,
    /// The signed-in user's profile with its forms.
    Home,
    /// A generic error page.
    Error,
    /// The phone's page about a scan-to-log-in code: what it would approve.
    QrApprove,
    /// The phone's page after Approve or Deny, or about a code it cannot use.
    QrResult,
}

impl Page {
    /// Every page, for loading and checking.
    pub const ALL: [Page; 7] =
        [Page::Layout, Page::Login, Page::Signup, Page::Home, Page::Error, Page::QrApprove, Page::QrResult];

    fn file_name(self) -> &'static str {
        match self {
            Page::Layout => "layout.html",
            Page::Login => "login.html",
            Page::Signup => "signup.html",
            Page::Home => "home.html",
            Page::Error => "error.html",
            Page::QrApprove => "qr_approve.html",
            Page::QrResult => "qr_result.html",
        }
    }
}

/// Markup that is safe to put in a page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// Plain text, escaped.
    pub fn text(text: &str) -> Html {
        Html(escape(text))
    }

    /// Markup written in this program's source, never built from input.
    pub fn trusted(markup: &'static str) -> Html {
        Html(markup.to_owned())
    }

    /// The markup.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The markup, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The one HTML escaping function: safe in element content and in quoted
/// attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The kind of an [`alert`] message, which picks its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// Something went wrong.
    Error,
    /// Something went right.
    Notice,
}

/// A message box above a form, announced to screen readers.
pub fn alert(kind: AlertKind, message: &str) -> Html {
    let class = match kind {
        AlertKind::Error => "alert error",
        AlertKind::Notice => "alert notice",
    };
    Html(format!("<p class=\"{class}\" role=\"alert\">{}</p>", escape(message)))
}

/// The scan-to-log-in panel of the log-in page for the code `key`: its
/// image, and the link that checks the code once (the page without script).
pub fn qr_panel(key: &str, expires_in_secs: u32) -> Html {
    let key = escape(key);
    Html(format!(
        "<section class=\"qr\" id=\"qr\" data-key=\"{key}\" data-expires-in=\"{expires_in_secs}\">\n\
         <h2>Or log in with your phone</h2>\n\
         <p class=\"hint\">Scan this code with a phone where you are logged in, then approve.</p>\n\
         <img id=\"qr-image\" src=\"/qr/image?key={key}\" width=\"232\" height=\"232\" \
         alt=\"QR code to log in with your phone\">\n\
         <p class=\"qr-status\" id=\"qr-status\" role=\"status\"></p>\n\
         <p class=\"qr-scanner\" id=\"qr-scanner\" hidden><img id=\"qr-scanner-avatar\" alt=\"\" \
         width=\"32\" height=\"32\" hidden> <span id=\"qr-scanner-name\"></span></p>\n\
         <p><a id=\"qr-check\" href=\"/qr/wait?key={key}\">Approved on your phone? Continue</a></p>\n\
         </section>"
    ))
}

/// The profile picture, or a placeholder with the nickname's first letter.
pub fn avatar(image_url: Option<&str>, nickname: &str) -> Html {
    match image_url {
        Some(url) => Html(format!(
            "<img class=\"avatar\" id=\"avatar\" src=\"{}\" alt=\"Profile picture\" width=\"96\" height=\"96\">",
            escape(url)
        )),
        None => {
            let initial: String =
                nickname.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
            Html(format!(
                "<div class=\"avatar placeholder\" id=\"avatar\" aria-label=\"No picture yet\">{}</div>",
                escape(&initial)
            ))
        }
    }
}

/// Why the templates could not be loaded.
#[derive(Debug)]
pub enum TemplateError {
    /// A template file could not be read.
    Read(PathBuf, std::io::Error),
    /// A `{{` without its `}}`.
    Unclosed(PathBuf),
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Read(path, e) => write!(f, "cannot read template {}: {e}", path.display()),
            TemplateError::Unclosed(path) => write!(f, "template {} has an unclosed {{{{", path.display()),
        }
    }
}

impl std::error::Error for TemplateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TemplateError::Read(_, e) => Some(e),
            TemplateError::Unclosed(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Slot(String),
}

/// All templates, parsed.
#[derive(Debug, Clone)]
pub struct Templates {
    pages: HashMap<Page, Vec<Part>>,
}

impl Templates {
    /// Reads and parses every [`Page`] from `dir`.
    ///
    /// # Errors
    ///
    /// A [`TemplateError`] for the first file that is missing or malformed.
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let mut pages = HashMap::new();
        for page in Page::ALL {
            let path = dir.join(page.file_name());
            let source = std::fs::read_to_string(&path).map_err(|e| TemplateError::Read(path.clone(), e))?;
            pages.insert(page, parse(&source).ok_or(TemplateError::Unclosed(path))?);
        }
        Ok(Templates { pages })
    }

    /// Fills `page`'s slots from `values`; a slot without a value renders empty.
    pub fn render(&self, page: Page, values: &[(&str, &Html)]) -> Html {
        let mut out = String::new();
        for part in self.pages.get(&page).map(Vec::as_slice).unwrap_or_default() {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Slot(name) => {
                    if let Some((_, value)) = values.iter().find(|(n, _)| n == name) {
                        out.push_str(value.as_str());
                    }
                }
            }
        }
        Html(out)
    }

    /// Renders `page` inside the layout, as a complete document.
    pub fn page(&self, page: Page, title: &str, values: &[(&str, &Html)]) -> String {
        let content = self.render(page, values);
        self.render(Page::Layout, &[("title", &Html::text(title)), ("content", &content)]).into_string()
    }

    /// The slot names of `page`, in order (for tests that check every slot is filled).
    pub fn slots(&self, page: Page) -> Vec<&str> {
        let parts = self.pages.get(&page).map(Vec::as_slice).unwrap_or_default();
        parts
            .iter()
            .filter_map(|p| match p {
                Part::Slot(name) => Some(name.as_str()),
                Part::Literal(_) => None,
            })
            .collect()
    }
}

/// Splits a template into literal text and `{{name}}` slots; `None` if a `{{`
/// is never closed.
fn parse(source: &str) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        let (literal, after) = rest.split_at(start);
        parts.push(Part::Literal(literal.to_owned()));
        let end = after.find("}}")?;
        parts.push(Part::Slot(after[2..end].trim().to_owned()));
        rest = &after[end + 2..];
    }
    parts.push(Part::Literal(rest.to_owned()));
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_in_text_and_attributes() {
        assert_eq!(escape("<script>alert('x')</script>"), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        assert_eq!(escape("a\" onmouseover=\"x"), "a&quot; onmouseover=&quot;x");
        assert_eq!(escape("李小龍 🐉 & co"), "李小龍 🐉 &amp; co");
    }

    #[test]
    fn slots_are_filled_and_unknown_ones_left_empty() {
        let parts = parse("<h1>{{ title }}</h1>{{missing}}<p>{{body}}</p>").unwrap();
        let t = Templates { pages: HashMap::from([(Page::Error, parts)]) };
        let html =
            t.render(Page::Error, &[("title", &Html::text("<b>")), ("body", &Html::trusted("<i>ok</i>"))]);
        assert_eq!(html.as_str(), "<h1>&lt;b&gt;</h1><p><i>ok</i></p>");
        assert!(parse("{{oops").is_none());
    }

    #[test]
    fn avatar_placeholder_uses_the_first_letter_escaped() {
        assert!(avatar(None, "<x").as_str().contains(">&lt;</div>"));
        assert!(avatar(None, "émile").as_str().contains(">É</div>"));
        assert!(avatar(Some("/static/avatars/a\".png"), "n").as_str().contains("a&quot;.png"));
    }

    #[test]
    fn the_shipped_templates_load_and_use_known_slots() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../html");
        let t = Templates::load(&dir).unwrap();
        let known = [
            "title", "content", "message", "csrf", "username", "nickname", "avatar", "heading", "notices",
            "devices", "history", "next", "qr", "browser", "os", "ip", "created", "key",
        ];
        for page in Page::ALL {
            for slot in t.slots(page) {
                assert!(known.contains(&slot), "{page:?} has unknown slot {slot}");
            }
        }
        assert!(t.slots(Page::Home).contains(&"csrf"));
        assert!(t.slots(Page::QrApprove).contains(&"csrf"));
    }

    #[test]
    fn the_qr_panel_escapes_its_key_and_links_the_check() {
        let panel = qr_panel("a\"b", 120);
        assert!(panel.as_str().contains("data-key=\"a&quot;b\""), "{}", panel.as_str());
        assert!(panel.as_str().contains("href=\"/qr/wait?key=a&quot;b\""));
    }
}
