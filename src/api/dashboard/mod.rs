//! The dashboard's static files, embedded in the binary at build time (`include_str!`), and the
//! security headers that every `/dashboard*` response carries.
//!
//! The page (`index.html`, `app.js`, `app.css`, `icon.svg`) is plain HTML, JavaScript and CSS:
//! no build step, no framework, nothing fetched from another origin. It reads the JSON of
//! `/dashboard/api/*` with the bearer token the operator types (kept in the tab's
//! `sessionStorage`, sent as `Authorization: Bearer`, never in a URL) and puts every value into
//! the page with text APIs only.
//!
//! Never: serves a file from disk, serves the page without [`SECURITY_HEADERS`], or lets the page
//! run inline script or style (the CSP forbids both, so an injected `<script>` cannot run).

#![forbid(unsafe_code)]

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::route::DashboardAsset;

/// `Content-Security-Policy` of every `/dashboard*` response: only this origin's script, style,
/// images and fetches; no inline script or style, no `<base>`, no form posts, no framing.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The headers added to every `/dashboard*` response (the page, its files, the JSON, errors).
pub(crate) const SECURITY_HEADERS: [(HeaderName, &str); 3] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const ICON_SVG: &str = include_str!("icon.svg");

/// The content type and body of a dashboard file.
pub(crate) fn asset(asset: DashboardAsset) -> (&'static str, &'static str) {
    match asset {
        DashboardAsset::Page => ("text/html; charset=utf-8", INDEX_HTML),
        DashboardAsset::Script => ("text/javascript; charset=utf-8", APP_JS),
        DashboardAsset::Style => ("text/css; charset=utf-8", APP_CSS),
        DashboardAsset::Icon => ("image/svg+xml", ICON_SVG),
    }
}

/// Whether a request path is the dashboard's (`/dashboard` or below it).
pub(crate) fn is_dashboard_path(path: &str) -> bool {
    path.strip_prefix("/dashboard")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Adds [`SECURITY_HEADERS`] to a response's headers.
pub(crate) fn secure(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_paths() {
        assert!(is_dashboard_path("/dashboard"));
        assert!(is_dashboard_path("/dashboard/app.js"));
        assert!(is_dashboard_path("/dashboard/api/summary"));
        assert!(!is_dashboard_path("/dashboards"));
        assert!(!is_dashboard_path("/"));
        assert!(!is_dashboard_path("/events"));
    }

    #[test]
    fn dashboard_files_follow_the_csp() {
        let (kind, page) = asset(DashboardAsset::Page);
        assert!(kind.starts_with("text/html"));
        let lower = page.to_ascii_lowercase();
        // Inline script, inline style, handlers in markup, or another origin: the CSP would
        // refuse them, and a refused resource is a console error and a broken page.
        for banned in ["<script>", "<style", "style=", "javascript:", "://"] {
            assert!(!lower.contains(banned), "index.html contains {banned:?}");
        }
        assert!(
            !has_handler_attribute(&lower),
            "index.html has an on...= attribute"
        );
        assert!(page.contains("<script src=\"/dashboard/app.js\" defer></script>"));
        assert!(page.contains("href=\"/dashboard/app.css\""));
        let (_, script) = asset(DashboardAsset::Script);
        // Attacker-controlled text goes in through text APIs only.
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute(\"style",
            "setAttribute(\"href",
            "setAttribute(\"src",
        ] {
            assert!(!script.contains(banned), "app.js contains {banned:?}");
        }
        let other_origins = script.replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !other_origins.contains("://"),
            "app.js names another origin"
        );
        let (_, style) = asset(DashboardAsset::Style);
        assert!(!style.contains("@import") && !style.contains("url("));
    }

    /// Whether `html` has an attribute like ` onclick=`.
    fn has_handler_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let name: String = html[at + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            !name.is_empty() && html[at + 3 + name.len()..].starts_with('=')
        })
    }

    #[test]
    fn dashboard_security_headers() {
        let mut headers = HeaderMap::new();
        secure(&mut headers);
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    }
}
