//! Who reads a page, held to the policy entry of the RPC that reads the
//! same data: the page asks the gate's table and the same scope functions
//! the service asks, no rule of its own. An object of another OPD answers
//! with the very page of a missing one.

use siaga_proto::v1::device_info::State as DeviceState;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{SESSION_COOKIE, Web, html, pages, redirect, session, set_cookie};
use crate::api::gate::allowed;
use crate::api::policy::rule_of;
use crate::api::{ApiError, Caller};

/// The logged-in person of the request, or the way to the login page.
pub(super) async fn person(
    web: &Arc<Web>,
    headers: &HeaderMap,
) -> Result<(session::Session, Caller), Response> {
    let Some((id, s)) = web.session(headers) else {
        return Err(redirect("/masuk", vec![]));
    };
    let Some(caller) = web.caller(&id, &s).await else {
        return Err(redirect(
            "/masuk",
            vec![set_cookie(SESSION_COOKIE, "", Duration::ZERO)],
        ));
    };
    Ok((s, caller))
}

/// The refusal page when the table does not let `caller` call one of
/// `rpcs`; `None` when it lets them call each.
pub(super) fn refused(rpcs: &[&str], caller: &Caller) -> Option<Response> {
    rpcs.iter().find_map(|rpc| {
        let Some(rule) = rule_of(rpc) else {
            tracing::error!(rpc, "a web page names an RPC without a policy entry");
            return Some(html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::notice("Galat", "Aturan akses halaman ini tidak ditemukan."),
                vec![],
            ));
        };
        allowed(rule, caller).err().map(|e| {
            html(
                StatusCode::FORBIDDEN,
                pages::notice("Ditolak", &e.to_string()),
                vec![],
            )
        })
    })
}

/// The page of a missing object, the same for one the person may not see.
pub(super) fn missing() -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::notice("Tidak ditemukan", "Halaman ini tidak ada."),
        vec![],
    )
}

/// The page for a failed read: not found as [`missing`], anything else
/// logged and answered as an error.
pub(super) fn failed(what: &str, e: ApiError) -> Response {
    match e {
        ApiError::NotFound(_) => missing(),
        e => {
            tracing::error!(error = %e, what, "web page");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::notice("Galat", "Halaman ini tidak dapat dibaca saat ini."),
                vec![],
            )
        }
    }
}

/// A path segment with everything but unreserved characters escaped.
pub(super) fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A device state as the board names it.
pub(super) fn state_word(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Up => "Hidup",
        DeviceState::Degraded => "Menurun",
        DeviceState::Down => "Mati",
        DeviceState::Unreachable => "Tak terjangkau",
        DeviceState::Stale => "Basi",
        DeviceState::Unknown | DeviceState::Unspecified => "Tak diketahui",
    }
}

/// The CSS class of a state (the board's colours).
pub(super) fn state_class(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Up => "baik",
        DeviceState::Down | DeviceState::Unreachable => "buruk",
        _ => "waspada",
    }
}

/// The extra rules of the OPD and device pages (tables that scroll on a
/// phone, charts that fit their box).
pub(super) const CSS: &str = "\
.gulung{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}\
th,td{padding:.35rem .5rem;border-bottom:1px solid #e3e6ea;text-align:left;white-space:nowrap}\
td.angka,th.angka{text-align:right}.keadaan{font-weight:600}.keadaan.buruk{color:#c62828}\
.keadaan.waspada{color:#9a6b00}.keadaan.baik{color:#2e7d32}\
nav.rentang{display:flex;gap:.4rem;margin:.5rem 0}nav.rentang a{padding:.3rem .7rem;border-radius:.3rem;background:#fff;text-decoration:none}\
nav.rentang a[aria-current]{background:#123a6b;color:#fff}\
.grafik{margin:0 0 1rem;background:#fff;border-radius:.4rem;padding:.5rem;box-shadow:0 1px 2px #0002}\
.grafik svg{width:100%;height:auto;display:block}.grafik figcaption{font-size:.9rem;margin-bottom:.3rem}\
.kosong{color:#566;font-style:italic;margin:.5rem 0}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_escapes_what_is_not_plain() {
        assert_eq!(segment("dinkes-sw.1"), "dinkes-sw.1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
