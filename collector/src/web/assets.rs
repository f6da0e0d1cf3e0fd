//! The console's vendored scripts (htmx and its SSE extension, see
//! `assets/README.md`), compiled into the binary and served at paths that
//! name their version: a browser keeps them for a year and asks again only
//! when an upgrade changes the path. Pages work without them.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// Where htmx is served.
pub const HTMX_PATH: &str = "/aset/htmx-2.0.11.min.js";
/// Where its SSE extension is served.
pub const SSE_PATH: &str = "/aset/htmx-ext-sse-2.2.4.min.js";

const HTMX: &[u8] = include_bytes!("assets/htmx-2.0.11.min.js");
const SSE: &[u8] = include_bytes!("assets/htmx-ext-sse-2.2.4.min.js");
const HTMX_HEADER: &str = "/*! htmx 2.0.11 (htmx.min.js) | Zero-Clause BSD license */\n";
const SSE_HEADER: &str =
    "/*! htmx-ext-sse 2.2.4 (sse.min.js) | BSD Zero Clause License, (c) 2023 Alexander Petros */\n";

fn script(header_line: &'static str, body: &'static [u8]) -> Response {
    let mut bytes = Vec::with_capacity(header_line.len() + body.len());
    bytes.extend_from_slice(header_line.as_bytes());
    bytes.extend_from_slice(body);
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// [`HTMX_PATH`].
pub(super) async fn htmx() -> Response {
    script(HTMX_HEADER, HTMX)
}

/// [`SSE_PATH`].
pub(super) async fn sse() -> Response {
    script(SSE_HEADER, SSE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn sha256(b: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(b))
    }

    #[test]
    fn the_vendored_files_are_the_released_ones() {
        // As assets/README.md records them.
        assert_eq!(
            sha256(HTMX),
            "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
        );
        assert_eq!(
            sha256(SSE),
            "98a46496de0c3605fbffdce9167ba427bdd9553184f83f149c261891a92c0136"
        );
        let readme = include_str!("assets/README.md");
        assert!(readme.contains(&sha256(HTMX)) && readme.contains(&sha256(SSE)));
        assert!(
            HTMX_PATH.ends_with("htmx-2.0.11.min.js") && SSE_PATH.ends_with("sse-2.2.4.min.js")
        );
    }
}
