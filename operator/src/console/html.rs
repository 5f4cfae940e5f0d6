//! HTML writing for the console: escaping, query-string encoding, and the page frame every
//! page shares (header, navigation, skip link, the live region, the stylesheet and script).
//!
//! Everything that comes from an ImageBuild goes through [`Esc`]; nothing here reads state.

use std::fmt::{self, Display, Write as _};

/// The console's stylesheet path.
pub const STYLESHEET_PATH: &str = "/assets/console.css";
/// The console's script path.
pub const SCRIPT_PATH: &str = "/assets/console.js";

/// Text escaped for HTML content and double-quoted attribute values.
pub struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            let replacement = match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            };
            f.write_str(replacement)?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// `value` encoded for a query string (`application/x-www-form-urlencoded`).
pub fn query_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The link to an image's page.
pub fn image_href(namespace: &str, name: &str) -> String {
    // Namespaces and names are DNS labels and subdomains: nothing to encode.
    format!("/images/{}/{}", query_value(namespace), query_value(name))
}

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// The image list and image pages.
    Images,
    /// The package search.
    Packages,
}

/// A whole page: `title`, the navigation with `section` current, and `body` (already HTML)
/// inside `<main>`.
pub fn page(title: &str, section: Section, body: &str) -> String {
    let mut html = String::with_capacity(body.len() + 2048);
    let current = |s: Section| {
        if s == section {
            " aria-current=\"page\""
        } else {
            ""
        }
    };
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · SecureBuild</title>\n\
         <link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">\n\
         <script src=\"{SCRIPT_PATH}\" defer></script>\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#content\">Skip to content</a>\n\
         <header>\n<p class=\"brand\"><a href=\"/\">SecureBuild</a></p>\n\
         <nav aria-label=\"Main\"><ul>\
         <li><a href=\"/\"{images}>Images</a></li>\
         <li><a href=\"/packages\"{packages}>Packages</a></li>\
         </ul></nav>\n</header>\n\
         <main id=\"content\" tabindex=\"-1\">\n{body}</main>\n\
         <p id=\"announce\" class=\"visually-hidden\" role=\"status\" aria-live=\"polite\"></p>\n\
         <footer><p>Read-only view of the ImageBuilds this operator watches.</p></footer>\n\
         </body>\n</html>\n",
        title = Esc(title),
        images = current(Section::Images),
        packages = current(Section::Packages),
    );
    html
}

/// A `<time>` element for an RFC 3339 time.
pub fn time(value: &str) -> String {
    format!(
        "<time datetime=\"{v}\">{shown}</time>",
        v = Esc(value),
        shown = Esc(&value.replace('T', " ").replace('Z', " UTC"))
    )
}

/// A reference people copy: in `<code>`, with a copy button the script adds.
pub fn copyable(value: &str, label: &str) -> String {
    format!(
        "<span class=\"copy\"><code data-copy=\"{v}\" data-copy-label=\"{l}\">{v}</code></span>",
        v = Esc(value),
        l = Esc(label)
    )
}

/// A short digest for tables: `sha256:` and the first 12 hex digits, the full one in a title.
pub fn short_digest(digest: &str) -> String {
    let shown = match digest.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 => format!("{algorithm}:{}", &hex[..12]),
        _ => digest.to_string(),
    };
    format!(
        "<code title=\"{full}\">{shown}</code>",
        full = Esc(digest),
        shown = Esc(&shown)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            Esc("<script>alert(\"x\" & 'y')</script>").to_string(),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(Esc("plain").to_string(), "plain");
        assert_eq!(query_value("a b&c=ü"), "a+b%26c%3D%C3%BC");
    }

    #[test]
    fn the_frame_marks_the_current_section() {
        let html = page("Images <x>", Section::Packages, "<p>body</p>");
        assert!(html.contains("<title>Images &lt;x&gt; · SecureBuild</title>"));
        assert!(html.contains("<a href=\"/packages\" aria-current=\"page\">Packages</a>"));
        assert!(html.contains("<a href=\"/\">Images</a>"));
        assert!(html.contains("<main id=\"content\" tabindex=\"-1\">\n<p>body</p></main>"));
    }

    #[test]
    fn digests_shorten_with_the_full_one_in_the_title() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let html = short_digest(&digest);
        assert!(html.contains(&format!("title=\"{digest}\"")));
        assert!(html.contains(">sha256:abababababab<"));
    }
}
