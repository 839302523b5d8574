//! The web UI: static assets built into the binary (`query/ui/`), served at
//! `/` and `/ui/<file>`.
//!
//! What it guarantees: the binary is the only artefact (no CDN, no fetch of
//! fonts or scripts from anywhere, works air-gapped); the pages read the
//! same public API a script does, with the user's token, which lives in the
//! tab's session storage and is never put in a URL or sent anywhere but the
//! `Authorization` header. Every answer carries a strict
//! Content-Security-Policy (scripts and styles from this origin only, no
//! inline script, no framing, no plugins), `X-Content-Type-Options:
//! nosniff` and `Referrer-Policy: no-referrer`. Assets are revalidated by
//! their content hash (`ETag`), so a new binary is picked up at once and an
//! unchanged asset costs a 304.

use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use warp::http::{header, HeaderValue, StatusCode};
use warp::{Filter, Rejection, Reply};

/// The Content-Security-Policy of every UI answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// One asset: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    etag: OnceLock<String>,
}

macro_rules! assets {
    ($($name:literal => $ty:expr),* $(,)?) => {
        [$(Asset {
            name: $name,
            content_type: $ty,
            bytes: include_bytes!(concat!("../ui/", $name)),
            etag: OnceLock::new(),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: [Asset; 20] = assets![
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "format.js" => JS,
    "chart.js" => JS,
    "chat.js" => JS,
    "signin.js" => JS,
    "traces.js" => JS,
    "trace.js" => JS,
    "dashboard.js" => JS,
    "health.js" => JS,
    "scores.js" => JS,
    "sessions.js" => JS,
    "session.js" => JS,
    "users.js" => JS,
    "user.js" => JS,
    "logs.js" => JS,
    "metrics.js" => JS,
];

impl Asset {
    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.bytes);
            let mut tag = String::from("\"");
            observatory_schemas::kafka::push_hex(&mut tag, &digest[..12]);
            tag.push('"');
            tag
        })
    }
}

/// Names and sizes of every asset (for tests and the size budget).
pub fn asset_sizes() -> Vec<(&'static str, usize)> {
    ASSETS.iter().map(|a| (a.name, a.bytes.len())).collect()
}

fn serve(name: &str, if_none_match: Option<String>) -> warp::reply::Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return with_headers(
            warp::reply::with_status("no such file\n", StatusCode::NOT_FOUND).into_response(),
        );
    };
    let etag = asset.etag();
    let mut response = if if_none_match.as_deref() == Some(etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = warp::reply::Response::new(asset.bytes.into());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_str(etag).expect("hex"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_headers(response)
}

fn with_headers(mut response: warp::reply::Response) -> warp::reply::Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /` (the page) and `GET /ui/<file>` (its assets). No token: the
/// assets hold no data; every datum comes from `/api` with the token.
pub fn routes() -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let etag = || warp::header::optional::<String>("if-none-match");
    let index = warp::path::end()
        .and(warp::get())
        .and(etag())
        .map(|tag| serve("index.html", tag));
    let asset = warp::path!("ui" / String)
        .and(warp::get())
        .and(etag())
        .map(|name: String, tag| serve(&name, tag));
    index.or(asset).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
        let routes = routes();
        let page = warp::test::request().path("/").reply(&routes).await;
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        let body = String::from_utf8_lossy(page.body());
        // No inline script: every script is a file of ours.
        for tag in body.split("<script").skip(1) {
            assert!(
                tag.contains("src=\"/ui/"),
                "an inline script in index.html: {tag}"
            );
        }
        for asset in ASSETS.iter() {
            let r = warp::test::request()
                .path(&format!("/ui/{}", asset.name))
                .reply(&routes)
                .await;
            assert_eq!(r.status(), 200, "{}", asset.name);
            assert_eq!(r.headers()["content-type"], asset.content_type);
            let again = warp::test::request()
                .path(&format!("/ui/{}", asset.name))
                .header("if-none-match", r.headers()["etag"].to_str().unwrap())
                .reply(&routes)
                .await;
            assert_eq!(again.status(), 304, "{}", asset.name);
        }
        let missing = warp::test::request()
            .path("/ui/nope.js")
            .reply(&routes)
            .await;
        assert_eq!(missing.status(), 404);
    }

    #[test]
    fn every_module_the_scripts_import_is_served_and_nothing_is_fetched_from_elsewhere() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .rsplit_once("from \"./")
                    .map(|(_, t)| t.trim_end_matches("\";"))
                    .unwrap_or_else(|| panic!("{}: an import not of ./file: {line}", asset.name));
                assert!(
                    ASSETS.iter().any(|a| a.name == target),
                    "{} imports {target}, which is not served",
                    asset.name
                );
            }
            // The SVG namespace is a name, not an address that is fetched.
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} names an address elsewhere",
                asset.name
            );
            assert!(!text.contains("innerHTML"), "{} writes HTML", asset.name);
            assert!(!text.contains("eval("), "{}", asset.name);
        }
        let total: usize = asset_sizes().iter().map(|(_, n)| n).sum();
        assert!(total < 300 * 1024, "the UI is {total} bytes");
    }
}
