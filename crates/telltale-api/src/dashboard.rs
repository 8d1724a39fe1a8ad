//! The web dashboard: the files `dashboard/build.mjs` builds into `ui/`
//! (index.html, one script and one stylesheet named by a hash of their
//! content), embedded in the binary and served at `/` and `/ui/{file}`, so
//! the page works on a gateway with no internet. Each file is kept three
//! ways (as is, gzip, brotli) and sent in the best one the client accepts.
//! Hashed files are cached for a year; `/` is revalidated every time
//! (`no-cache`, with an ETag) so a new hub's page is seen at once.
//!
//! Nothing here reads the store: the page talks to the API like any client.

use crate::problem::Problem;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
#[derive(Debug)]
struct Asset {
    /// Its URL path (`/` for the page, `/ui/app-<hash>.js` for the others).
    path: &'static str,
    /// `Content-Type`.
    content_type: &'static str,
    /// Named by its content's hash: cache it for a year.
    immutable: bool,
    /// `Content-Security-Policy` for the page (empty: none).
    csp: &'static str,
    /// A strong ETag: the hash of its content, quoted.
    etag: &'static str,
    /// The file as built.
    identity: &'static [u8],
    /// gzip, level 9.
    gzip: &'static [u8],
    /// brotli, quality 11.
    brotli: &'static [u8],
}

/// The table `dashboard/build.mjs` writes beside the files.
static ASSETS: &[Asset] = include!("../ui/assets.rs");

/// How hashed files are cached.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The routes of the page, merged into the API's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("/", &headers)
}

async fn file(
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&format!("/ui/{file}"), &headers)
}

/// A content coding of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Brotli,
    Gzip,
    Identity,
}

/// The best coding the `Accept-Encoding` headers allow: brotli, then gzip,
/// then none. A coding with `q=0` is refused; `*` stands for any not named.
fn negotiate(headers: &HeaderMap) -> Coding {
    let (mut br, mut gzip, mut star) = (None, None, None);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
                .next()
                .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                .unwrap_or(1.0);
            let ok = q > 0.0;
            match name.as_str() {
                "br" => br = Some(ok),
                "gzip" | "x-gzip" => gzip = Some(ok),
                "*" => star = Some(ok),
                _ => {}
            }
        }
    }
    if br.or(star).unwrap_or(false) {
        Coding::Brotli
    } else if gzip.or(star).unwrap_or(false) {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// Whether `If-None-Match` names the ETag (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return Problem::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response();
    };
    let mut out = HeaderMap::new();
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if asset.immutable {
            IMMUTABLE
        } else {
            "no-cache"
        }),
    );
    out.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if not_modified(headers, asset.etag) {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    let mut fixed = vec![
        (header::CONTENT_TYPE, asset.content_type),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    if !asset.csp.is_empty() {
        fixed.push((header::CONTENT_SECURITY_POLICY, asset.csp));
        fixed.push((header::REFERRER_POLICY, "no-referrer"));
    }
    for (name, value) in fixed {
        out.insert(name, HeaderValue::from_static(value));
    }
    let body = match negotiate(headers) {
        Coding::Brotli => {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
            asset.brotli
        }
        Coding::Gzip => {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            asset.gzip
        }
        Coding::Identity => asset.identity,
    };
    (StatusCode::OK, out, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(uri: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = router::<()>()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes().to_vec();
        (parts.status, parts.headers, bytes)
    }

    fn h<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
        headers
            .get(name)
            .map(|v| v.to_str().expect("ascii"))
            .unwrap_or("")
    }

    fn page() -> &'static str {
        std::str::from_utf8(ASSETS[0].identity).expect("utf-8")
    }

    #[test]
    fn the_page_names_every_other_file_and_only_those() {
        assert_eq!(ASSETS[0].path, "/");
        let html = page();
        for a in &ASSETS[1..] {
            assert!(a.path.starts_with("/ui/app-"), "{}", a.path);
            assert!(html.contains(a.path), "index.html does not load {}", a.path);
            assert!(a.immutable);
            // The ETag is the hash in the name.
            let hash = a.etag.trim_matches('"');
            assert!(a.path.contains(hash), "{} {}", a.path, a.etag);
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no outside URL: {html}"
        );
    }

    #[test]
    fn accept_encoding_is_negotiated() {
        let cases = [
            ("", Coding::Identity),
            ("gzip, deflate", Coding::Gzip),
            ("gzip, deflate, br, zstd", Coding::Brotli),
            ("br;q=0, gzip", Coding::Gzip),
            ("BR", Coding::Brotli),
            ("gzip;q=0", Coding::Identity),
            ("identity", Coding::Identity),
            ("*", Coding::Brotli),
            ("br;q=0, *", Coding::Gzip),
            ("gzip;q=0.5, br;q=0.001", Coding::Brotli),
            ("x-gzip", Coding::Gzip),
            ("gzip;q=bad", Coding::Identity),
        ];
        for (value, want) in cases {
            let mut headers = HeaderMap::new();
            if !value.is_empty() {
                headers.insert(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_str(value).expect("header"),
                );
            }
            assert_eq!(negotiate(&headers), want, "{value:?}");
        }
    }

    #[tokio::test]
    async fn the_page_is_revalidated_and_the_files_are_cached_for_a_year() {
        let (status, headers, body) = get("/", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h(&headers, "content-type"), "text/html; charset=utf-8");
        assert_eq!(h(&headers, "cache-control"), "no-cache");
        assert_eq!(h(&headers, "content-encoding"), "");
        assert_eq!(h(&headers, "vary"), "accept-encoding");
        assert!(h(&headers, "content-security-policy").contains("default-src 'self'"));
        assert_eq!(body, page().as_bytes());
        let etag = h(&headers, "etag").to_owned();

        let (status, again, body) = get("/", &[("If-None-Match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert_eq!(h(&again, "etag"), etag);

        for a in &ASSETS[1..] {
            let (status, headers, body) = get(a.path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{}", a.path);
            assert_eq!(h(&headers, "cache-control"), IMMUTABLE);
            assert_eq!(h(&headers, "content-type"), a.content_type);
            assert_eq!(h(&headers, "x-content-type-options"), "nosniff");
            assert_eq!(body, a.identity);
        }
    }

    #[tokio::test]
    async fn compressed_copies_unpack_to_the_file() {
        use std::io::Read;
        for a in ASSETS {
            let (_, headers, body) = get(a.path, &[("Accept-Encoding", "gzip")]).await;
            assert_eq!(h(&headers, "content-encoding"), "gzip", "{}", a.path);
            let mut unpacked = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut unpacked)
                .expect("gzip");
            assert_eq!(unpacked, a.identity, "{}", a.path);

            let (_, headers, body) = get(a.path, &[("Accept-Encoding", "gzip, br")]).await;
            assert_eq!(h(&headers, "content-encoding"), "br", "{}", a.path);
            let mut unpacked = Vec::new();
            brotli_decompressor::Decompressor::new(&body[..], 4096)
                .read_to_end(&mut unpacked)
                .expect("brotli");
            assert_eq!(unpacked, a.identity, "{}", a.path);
        }
    }

    #[test]
    fn the_page_weighs_less_than_150_kib_compressed() {
        let brotli: usize = ASSETS.iter().map(|a| a.brotli.len()).sum();
        let gzip: usize = ASSETS.iter().map(|a| a.gzip.len()).sum();
        assert!(brotli < 150 * 1024, "{brotli} bytes with brotli");
        assert!(gzip < 150 * 1024, "{gzip} bytes with gzip");
    }

    #[tokio::test]
    async fn an_unknown_file_is_a_problem() {
        for uri in ["/ui/app.js", "/ui/nothing", "/ui/app-000000000000.js"] {
            let (status, headers, body) = get(uri, &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(h(&headers, "content-type"), "application/problem+json");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["code"], "not_found");
        }
    }
}
