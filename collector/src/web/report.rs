//! The work report in the console: `/tiket/{number}/laporan` shows the
//! report the `Reports` service gives (the very HTML of `siaga ticket
//! report --format html`, with its before/after comparison), a link to the
//! PDF, and the buttons of the OPD's acknowledgement and the Kepala Dinas's
//! review for those who may press them now. `/tiket/{number}/laporan.pdf`
//! is the service's PDF, byte for byte: the frozen report once reviewed.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{PreEscaped, html};
use siaga_proto::v1;
use tokio_stream::StreamExt as _;
use tonic::Status;

use super::tickets::{
    actions, call, failed, flash_line, nav, number_of, person, take_flash, ticket_not_found,
};
use super::{Web, pages};
use crate::api::Caller;

const GET_REPORT: &str = "/siaga.v1.Reports/GetReport";

/// Ticket `number`'s work report in `format` (Bahasa Indonesia) as the
/// `Reports` service streams it to `caller`: its description and bytes.
async fn report(
    web: &Web,
    caller: &Caller,
    number: &str,
    format: &str,
) -> Result<(v1::DocumentInfo, Vec<u8>), Status> {
    let hub = web.hub.clone();
    let mut stream = call(
        web,
        caller,
        GET_REPORT,
        v1::GetReportRequest {
            ticket: number.to_string(),
            format: format.into(),
            lang: "id".into(),
        },
        |r| async move {
            use siaga_proto::v1::reports_server::Reports as _;
            crate::report::api::ReportsApi::new(hub).get_report(r).await
        },
    )
    .await?;
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if info.is_none() {
            info = chunk.info;
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let info = info.ok_or_else(|| Status::internal("the report came without its description"))?;
    Ok((info, bytes))
}

/// What lies between `open` and `close` in `text` (empty when not there).
fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    text.find(open)
        .map(|i| &text[i + open.len()..])
        .and_then(|rest| rest.rfind(close).map(|j| &rest[..j]))
        .unwrap_or_default()
}

/// The report's own look, held inside its frame on the page (the report's
/// stylesheet is for a file of its own: it styles `body` and `header`).
const REPORT_CSS: &str = "\
.laporan{background:#fff;border-radius:.4rem;padding:1rem;box-shadow:0 1px 2px #0002;overflow-x:auto}\
.laporan header{display:block;background:none;color:inherit;text-align:center;border-bottom:2px solid #111;padding:0 0 6px}\
.laporan .office{font-weight:bold;text-transform:uppercase}.laporan h1{font-size:1.2rem;text-align:center}\
.laporan p.sub{text-align:center}.laporan th,.laporan td{border:1px solid #999}\
.laporan th{background:#eee}.laporan table.facts td{border:none}\
.laporan td.num{text-align:right;white-space:nowrap}.laporan td.better{color:#1e7b34;font-weight:bold}\
.laporan td.worse{color:#b00020;font-weight:bold}.laporan .note{color:#444;font-size:.85rem}\
.laporan .draft{border:2px solid #b00020;color:#b00020;font-weight:bold;text-align:center;padding:4px}\
.laporan .watermark{display:none}.laporan .box{border:1px solid #999;padding:6px 8px}\
.laporan .signatures{display:flex;flex-wrap:wrap;gap:12px}.laporan .signatures div{flex:1;text-align:center}\
.laporan .signatures .space{height:40px}.laporan footer{font-size:.8rem;color:#444;border-top:1px solid #999}\
.unduh{display:inline-block;margin:.5rem 0;padding:.5rem 1rem;border-radius:.3rem;background:#1f5fae;color:#fff;text-decoration:none}";

/// `/tiket/{number}/laporan`.
pub(super) async fn report_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (s, caller) = match person(&web, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(number) = number_of(&raw) else {
        return ticket_not_found();
    };
    let (info, bytes) = match report(&web, &caller, &number, "html").await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let number = info.ticket.clone();
    let acts = actions(&web, &caller, &number).await;
    let (flash, clear) = take_flash(&headers);
    let text = String::from_utf8_lossy(&bytes);
    // The service's report escapes every text that came from a ticket.
    let content = between(&text, "<body>", "</body>");
    let to = |what: &str| format!("/tiket/{number}/{what}");
    let body = html! {
        style { (PreEscaped(super::tickets::CSS)) (PreEscaped(REPORT_CSS)) }
        (nav(&caller))
        (flash_line(&flash))
        p {
            a href=(format!("/tiket/{number}")) { "← Tiket " (number) }
        }
        p #jenis {
            @if info.r#final {
                "Laporan final, dibekukan pada tinjauan Kepala Dinas (" (info.reviewed_at) ")."
            } @else {
                "Draf: belum ditinjau Kepala Dinas; isinya berubah selama tiket berjalan."
            }
        }
        a.unduh #pdf href=(to("laporan.pdf")) download { "Unduh PDF" }
        @if acts.sop.acknowledge || acts.sop.review {
            div.aksi {
                @if acts.sop.acknowledge {
                    form #terima method="post" action=(to("terima")) {
                        input type="hidden" name="csrf" value=(s.csrf);
                        input type="hidden" name="kembali" value="laporan";
                        p { strong { "Terima laporan pekerjaan" } " (OPD)" }
                        label for="oleh" { "Nama, jabatan" }
                        input #oleh name="oleh" required;
                        button type="submit" { "Terima laporan" }
                    }
                }
                @if acts.sop.review {
                    form #tinjau method="post" action=(to("disposisi")) {
                        input type="hidden" name="csrf" value=(s.csrf);
                        input type="hidden" name="kembali" value="laporan";
                        p { strong { "Tinjauan Kepala Dinas" } " — membekukan laporan ini." }
                        label for="catatan" { "Catatan tinjauan" }
                        textarea #catatan name="catatan" rows="2" {}
                        button type="submit" { "Tinjau dan setujui" }
                    }
                }
            }
        }
        article.laporan { (PreEscaped(content)) }
    };
    super::html(
        StatusCode::OK,
        pages::page(&format!("Laporan {number}"), Some((&s.user, &s.csrf)), body),
        clear,
    )
}

/// `/tiket/{number}/laporan.pdf`: the service's PDF as it is.
pub(super) async fn report_pdf(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (_, caller) = match person(&web, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(number) = number_of(&raw) else {
        return ticket_not_found();
    };
    let (info, bytes) = match report(&web, &caller, &number, "pdf").await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    download(
        bytes,
        "application/pdf",
        &format!("laporan-{}.pdf", info.ticket),
    )
}

/// A file to save: `bytes` of `mime` named `name` (letters, digits, dashes
/// and dots only), not cached.
pub(super) fn download(bytes: Vec<u8>, mime: &'static str, name: &str) -> Response {
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::between;

    #[test]
    fn the_body_of_a_report() {
        let doc = "<html><head><style>body{}</style></head><body>\n<h1>A</h1>\n</body>\n</html>";
        assert_eq!(between(doc, "<body>", "</body>"), "\n<h1>A</h1>\n");
        assert_eq!(between("no body here", "<body>", "</body>"), "");
    }
}
