//! The Buku register (the register of service and fault requests) of a
//! period as a download, and the form that enters a ticket from an OPD's
//! letter. Both are calls of the typed services: `Documents/GetRegister`
//! (scoped as it scopes: a pemohon gets their OPD's tickets only) and
//! `Tickets/NewTicket` (its checks: a future date refused, the same letter
//! again answers the ticket already opened for it).

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use siaga_proto::v1;
use tokio_stream::StreamExt as _;
use tonic::{Code, Status};

use super::report::download;
use super::tickets::{
    CSS, call, csrf_refusal, failed, flash, flash_line, nav, person, see_other, take_flash,
};
use super::{Web, pages};
use crate::api::Caller;

const GET_REGISTER: &str = "/siaga.v1.Documents/GetRegister";
const NEW_TICKET: &str = "/siaga.v1.Tickets/NewTicket";

/// The register's query: the period, the format, an OPD.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RegisterQuery {
    #[serde(default)]
    dari: String,
    #[serde(default)]
    sampai: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    opd: String,
}

/// The OPDs `caller` sees, by id: (id, name).
pub(super) fn opds_of(web: &Web, caller: &Caller) -> Vec<(String, String)> {
    let inv = web.hub.inventory();
    let mut v: Vec<(String, String)> = inv
        .opds
        .values()
        .filter(|o| caller.sees(&o.id))
        .map(|o| (o.id.clone(), o.name.clone()))
        .collect();
    v.sort();
    v
}

fn register_form(web: &Web, caller: &Caller, q: &RegisterQuery, message: Option<&str>) -> Markup {
    let today = web.calendar.local(chrono::Utc::now()).date_naive();
    let first = today.format("%Y-%m-01").to_string();
    let dari = if q.dari.is_empty() {
        first
    } else {
        q.dari.clone()
    };
    let sampai = if q.sampai.is_empty() {
        today.to_string()
    } else {
        q.sampai.clone()
    };
    let opds = opds_of(web, caller);
    html! {
        style { (maud::PreEscaped(CSS)) }
        (nav(caller))
        @if let Some(m) = message { p.pesan role="alert" { (m) } }
        form.kartu #register method="get" action="/register" {
            p { "Buku permintaan layanan dan gangguan untuk satu periode, sebagai berkas CSV atau XLSX." }
            label for="dari" { "Dari tanggal" }
            input #dari type="date" name="dari" required value=(dari);
            label for="sampai" { "Sampai tanggal" }
            input #sampai type="date" name="sampai" required value=(sampai);
            @if opds.len() > 1 {
                label for="opd" { "OPD" }
                select #opd name="opd" {
                    option value="" { "Semua yang dapat Anda lihat" }
                    @for (id, name) in &opds {
                        option value=(id) selected[q.opd == *id] { (name) }
                    }
                }
            }
            label for="format" { "Format" }
            select #format name="format" {
                option value="csv" selected[q.format != "xlsx"] { "CSV" }
                option value="xlsx" selected[q.format == "xlsx"] { "XLSX (Excel)" }
            }
            button type="submit" { "Unduh" }
        }
    }
}

/// `/register`: the form, or (with a format) the register of the period.
pub(super) async fn register(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<RegisterQuery>,
) -> Response {
    let (s, caller) = match person(&web, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let page = |status: StatusCode, message: Option<&str>| {
        super::html(
            status,
            pages::page(
                "Buku register",
                Some((&s.user, &s.csrf)),
                register_form(&web, &caller, &q, message),
            ),
            vec![],
        )
    };
    if q.format.is_empty() {
        return page(StatusCode::OK, None);
    }
    let hub = web.hub.clone();
    let req = v1::GetRegisterRequest {
        from: q.dari.clone(),
        to: q.sampai.clone(),
        format: q.format.clone(),
        lang: "id".into(),
        opd: q.opd.clone(),
    };
    let got = async {
        let mut stream = call(&web, &caller, GET_REGISTER, req, |r| async move {
            use siaga_proto::v1::documents_server::Documents as _;
            crate::sop::documents::DocumentsApi::new(hub)
                .get_register(r)
                .await
        })
        .await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?.data);
        }
        Ok::<_, Status>(bytes)
    }
    .await;
    match got {
        Ok(bytes) => {
            let (mime, ext) = if q.format == "xlsx" {
                (
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    "xlsx",
                )
            } else {
                ("text/csv; charset=utf-8", "csv")
            };
            download(
                bytes,
                mime,
                &format!("register-{}-{}.{ext}", q.dari, q.sampai),
            )
        }
        Err(e) if e.code() == Code::InvalidArgument => {
            page(StatusCode::BAD_REQUEST, Some(e.message()))
        }
        Err(e) => failed(&e),
    }
}

/// The letter form's fields.
#[derive(Debug, Default, Deserialize)]
pub(super) struct LetterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    opd: String,
    #[serde(default)]
    nomor: String,
    #[serde(default)]
    tanggal: String,
    #[serde(default)]
    perihal: String,
    #[serde(default)]
    perangkat: String,
    #[serde(default)]
    mendesak: String,
}

fn letter_form(
    web: &Web,
    caller: &Caller,
    csrf: &str,
    f: &LetterForm,
    message: Option<&str>,
) -> Markup {
    let opds = opds_of(web, caller);
    let inv = web.hub.inventory();
    let mut devices: Vec<(String, String)> = inv
        .devices
        .values()
        .filter(|d| caller.sees(&d.opd))
        .map(|d| (d.opd.clone(), d.id.clone()))
        .collect();
    devices.sort();
    let today = web.calendar.local(chrono::Utc::now()).date_naive();
    let tanggal = if f.tanggal.is_empty() {
        today.to_string()
    } else {
        f.tanggal.clone()
    };
    html! {
        style { (maud::PreEscaped(CSS)) }
        (nav(caller))
        @if let Some(m) = message { p.pesan role="alert" { (m) } }
        form.kartu #surat method="post" action="/tiket/baru" {
            input type="hidden" name="csrf" value=(csrf);
            p { "Tiket pemeliharaan dari surat permintaan OPD (langkah 1 SOP)." }
            label for="opd" { "OPD" }
            select #opd name="opd" required {
                @for (id, name) in &opds {
                    option value=(id) selected[f.opd == *id] { (name) }
                }
            }
            label for="nomor" { "Nomor surat" }
            input #nomor name="nomor" required maxlength="100" value=(f.nomor);
            label for="tanggal" { "Tanggal surat" }
            input #tanggal type="date" name="tanggal" required value=(tanggal);
            label for="perihal" { "Perihal" }
            input #perihal name="perihal" required maxlength="200" value=(f.perihal);
            label for="perangkat" { "Perangkat (opsional)" }
            select #perangkat name="perangkat" {
                option value="" { "-" }
                @for (opd, id) in &devices {
                    option value=(id) selected[f.perangkat == *id] { (id) " (" (opd) ")" }
                }
            }
            label for="mendesak" {
                input #mendesak type="checkbox" name="mendesak" value="1" checked[!f.mendesak.is_empty()];
                " Mendesak (waktu kalender)"
            }
            button type="submit" { "Buat tiket" }
        }
    }
}

/// `GET /tiket/baru`: the letter form, for those the policy lets enter one.
pub(super) async fn letter_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let (s, caller) = match person(&web, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some(rule) = crate::api::policy::rule_of(NEW_TICKET)
        && let Err(e) = crate::api::gate::allowed(rule, &caller)
    {
        return failed(&Status::from(e));
    }
    let (flash, clear) = take_flash(&headers);
    let body = html! {
        (flash_line(&flash))
        (letter_form(&web, &caller, &s.csrf, &LetterForm::default(), None))
    };
    super::html(
        StatusCode::OK,
        pages::page("Tiket dari surat", Some((&s.user, &s.csrf)), body),
        clear,
    )
}

/// `POST /tiket/baru`: `Tickets/NewTicket`; to the ticket, saying whether
/// it is new or the one the letter already has.
pub(super) async fn new_letter(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<LetterForm>,
) -> Response {
    let (s, caller) = match person(&web, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refusal(&s, &f.csrf) {
        return r;
    }
    let hub = web.hub.clone();
    let req = v1::NewTicketRequest {
        opd: f.opd.clone(),
        letter_number: f.nomor.clone(),
        letter_date: f.tanggal.clone(),
        subject: f.perihal.clone(),
        device: f.perangkat.clone(),
        link: String::new(),
        urgent: !f.mendesak.is_empty(),
    };
    let r = call(&web, &caller, NEW_TICKET, req, |r| async move {
        use siaga_proto::v1::tickets_server::Tickets as _;
        crate::ticket::api::TicketsApi::new(hub).new_ticket(r).await
    })
    .await;
    match r {
        Ok(r) => {
            let Some(t) = r.ticket else {
                return failed(&Status::internal("the new ticket came without its number"));
            };
            let said = if r.already_filed {
                format!(
                    "Surat {} sudah tercatat sebagai tiket {}; tidak ada tiket baru.",
                    f.nomor.trim(),
                    t.id
                )
            } else {
                format!("Tiket {} dibuat dari surat {}.", t.id, f.nomor.trim())
            };
            see_other(
                &format!("/tiket/{}", t.id),
                vec![flash(!r.already_filed, &said)],
            )
        }
        Err(e) => {
            let status = match e.code() {
                Code::PermissionDenied => StatusCode::FORBIDDEN,
                Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            super::html(
                status,
                pages::page(
                    "Tiket dari surat",
                    Some((&s.user, &s.csrf)),
                    letter_form(&web, &caller, &s.csrf, &f, Some(e.message())),
                ),
                vec![],
            )
        }
    }
}
