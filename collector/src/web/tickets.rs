//! The ticket pages: the queue (Antrian tiket), one ticket with its SOP
//! timeline, its evidence and the actions the person may take now, and the
//! forms behind those actions.
//!
//! Every read and every action is a call of the typed service — the same
//! handler, the same policy entry and the same audit record as the gRPC
//! call ([`call`]). What a person may do now is the workflow's own answer
//! ([`crate::sop::api::permitted`]), never a rule of this module's.

use siaga_proto::v1::measurement::Phase;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use siaga_proto::v1;
use tonic::{Code, Status};

use super::{SESSION_COOKIE, Web, cookie, pages, set_cookie};
use crate::api::Caller;
use crate::api::gate::{allowed, refusal};
use crate::api::policy::rule_of;
use crate::sop::workflow::Permitted;

/// The cookie that carries a message to the page a form redirects to.
pub(super) const FLASH_COOKIE: &str = "siaga_pesan";
/// Tickets per page of the queue.
const PAGE_SIZE: u32 = 25;

pub(super) const DISPOSE: &str = "/siaga.v1.Sop/DisposeTicket";
pub(super) const RETURN: &str = "/siaga.v1.Sop/ReturnTicket";
pub(super) const ACKNOWLEDGE: &str = "/siaga.v1.Sop/AcknowledgeTicket";
pub(super) const UPDATE: &str = "/siaga.v1.Tickets/UpdateTicket";
pub(super) const MEASURE: &str = "/siaga.v1.Measure/MeasureTicket";
const GET_TICKET: &str = "/siaga.v1.Tickets/GetTicket";
const LIST_TICKETS: &str = "/siaga.v1.Tickets/ListTickets";
const LIST_INBOX: &str = "/siaga.v1.Sop/ListInbox";

/// Calls `rpc` as `caller` the way the gRPC gate does: the policy entry
/// first (a refusal of a state-changing call is audited), then the typed
/// service's own handler `f` with the caller in the request, then the
/// outcome of a state-changing call on the API audit trail, worded as the
/// gate words it.
pub(super) async fn call<Q, A, F, Fut>(
    web: &Web,
    caller: &Caller,
    rpc: &'static str,
    body: Q,
    f: F,
) -> Result<A, Status>
where
    F: FnOnce(tonic::Request<Q>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<A>, Status>>,
{
    let Some(rule) = rule_of(rpc) else {
        tracing::error!(rpc, "web console call of an RPC without a policy entry");
        return Err(Status::unimplemented(format!("{rpc}: no policy entry")));
    };
    if let Err(e) = allowed(rule, caller) {
        if rule.changes {
            web.audit(
                &caller.name,
                caller.opd.as_deref(),
                rpc,
                format!("refused: {e}"),
            )
            .await;
        }
        return Err(e.into());
    }
    let mut req = tonic::Request::new(body);
    req.extensions_mut().insert(caller.clone());
    let r = f(req).await;
    if rule.changes {
        let outcome = match &r {
            Ok(_) => "ok".to_string(),
            Err(s) => refusal(s.code(), s.message()),
        };
        web.audit(&caller.name, caller.opd.as_deref(), rpc, outcome)
            .await;
    }
    r.map(tonic::Response::into_inner)
}

/// Whether the policy table lets `caller` call `rpc` at all.
fn may(rpc: &str, caller: &Caller) -> bool {
    rule_of(rpc).is_some_and(|r| allowed(r, caller).is_ok())
}

/// The logged-in person of a request: the session and the caller, or the
/// answer that sends them to the login page.
pub(super) async fn person(
    web: &Arc<Web>,
    headers: &HeaderMap,
) -> Result<(super::session::Session, Caller), Response> {
    let Some((id, s)) = web.session(headers) else {
        return Err(see_other("/masuk", vec![]));
    };
    let Some(caller) = web.caller(&id, &s).await else {
        return Err(see_other(
            "/masuk",
            vec![set_cookie(SESSION_COOKIE, "", Duration::ZERO)],
        ));
    };
    Ok((s, caller))
}

/// The refusal (a 403 page) of a form whose token `given` is not the
/// session's CSRF token; `None` when it is.
pub(super) fn csrf_refusal(s: &super::session::Session, given: &str) -> Option<Response> {
    if !given.is_empty() && super::session::same(given, &s.csrf) {
        return None;
    }
    tracing::warn!(user = %s.user, "web form without the session's CSRF token; refused");
    Some(super::html(
        StatusCode::FORBIDDEN,
        pages::notice(
            "Ditolak",
            "Formulir ini tidak sah untuk sesi Anda. Muat ulang halaman dan coba lagi.",
        ),
        vec![],
    ))
}

/// A `303 See Other` to `to` (a path of ours), setting `cookies`.
pub(super) fn see_other(to: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
    r
}

/// The page for a ticket that is missing or not the person's to see: the
/// same, word for word, either way.
pub(super) fn ticket_not_found() -> Response {
    super::html(
        StatusCode::NOT_FOUND,
        pages::notice("Tidak ditemukan", "Tiket ini tidak ditemukan."),
        vec![],
    )
}

/// The page for a service's answer that is not a refusal of the form.
pub(super) fn failed(s: &Status) -> Response {
    match s.code() {
        Code::NotFound => ticket_not_found(),
        Code::PermissionDenied => super::html(
            StatusCode::FORBIDDEN,
            pages::notice("Ditolak", s.message()),
            vec![],
        ),
        Code::InvalidArgument => super::html(
            StatusCode::BAD_REQUEST,
            pages::notice("Permintaan tidak sah", s.message()),
            vec![],
        ),
        Code::FailedPrecondition => super::html(
            StatusCode::CONFLICT,
            pages::notice("Tidak dapat dilakukan sekarang", s.message()),
            vec![],
        ),
        _ => super::html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::notice("Galat", s.message()),
            vec![],
        ),
    }
}

/// A ticket number as typed in a path: letters, digits and dashes only,
/// so it is safe in a `Location` header; anything else is not a ticket.
pub(super) fn number_of(raw: &str) -> Option<String> {
    let n = raw.trim();
    (!n.is_empty()
        && n.len() <= crate::api::limits::len::ID
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    .then(|| n.to_ascii_uppercase())
}

/// A message for the next page: `ok` or a refusal.
pub(super) fn flash(ok: bool, message: &str) -> HeaderValue {
    let value = format!("{}{}", if ok { "1" } else { "0" }, hex::encode(message));
    set_cookie(FLASH_COOKIE, &value, Duration::from_secs(60))
}

/// The message a form left for this page, and the cookie that clears it.
pub(super) fn take_flash(headers: &HeaderMap) -> (Option<(bool, String)>, Vec<HeaderValue>) {
    let Some(v) = cookie(headers, FLASH_COOKIE) else {
        return (None, vec![]);
    };
    let clear = vec![set_cookie(FLASH_COOKIE, "", Duration::ZERO)];
    let ok = v.starts_with('1');
    let text = hex::decode(v.get(1..).unwrap_or_default())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    (text.map(|t| (ok, t)), clear)
}

/// `s` percent-encoded for a query string.
pub(super) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A role id as people say it.
pub(super) fn role_name(web: &Web, role: &str) -> String {
    // One source: the SOP file's `[[role]] name`, as the documents print it.
    match web.hub.health.sop_store.sop().role(role) {
        Some(r) => r.name.clone(),
        None if *role == crate::role::Role::ADMIN => "Admin".into(),
        None => role.replace('_', " "),
    }
}

/// Roles as " / "-joined ids, as people say them.
fn roles_text(web: &Web, roles: &str) -> String {
    roles
        .split(" / ")
        .filter(|r| !r.trim().is_empty())
        .map(|r| role_name(web, r.trim()))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A protobuf time in the calendar's zone: `24-11-2026 08:00 WIB`.
pub(super) fn local(web: &Web, t: Option<&pbjson_types::Timestamp>) -> String {
    match t {
        Some(t) => {
            let at = web.calendar.local(crate::ticket::wire::time(t));
            format!(
                "{} {}",
                at.format("%d-%m-%Y %H:%M"),
                web.calendar.zone_abbr()
            )
        }
        None => "-".into(),
    }
}

/// Extra styles of the ticket pages (the layout's own stay in [`pages`]).
pub(super) const CSS: &str = "\
table{width:100%;border-collapse:collapse;background:#fff;font-size:.9rem}\
th,td{text-align:left;padding:.4rem;border-bottom:1px solid #e3e6ea;vertical-align:top}\
.tabel{overflow-x:auto}.terlambat{color:#c62828;font-weight:600}.tepat{color:#2e7d32}\
.ok{padding:.6rem;border-radius:.3rem;background:#e6f4ea;color:#1e5631;margin-bottom:.5rem}\
.filter{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end}.filter label{margin:0}\
.filter input,.filter select{width:auto}select,textarea{font:inherit;padding:.4rem;width:100%}\
.aksi{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.8rem}\
.aksi form{background:#fff;border-radius:.4rem;padding:.8rem;box-shadow:0 1px 2px #0002}\
.aksi button{margin-top:.6rem;width:100%}section{margin:1rem 0}h2{font-size:1.05rem}\
ol.linimasa{padding-left:1.2rem}ol.linimasa li{margin:.3rem 0}";

/// The message line of a page.
pub(super) fn flash_line(f: &Option<(bool, String)>) -> Markup {
    html! {
        @if let Some((ok, m)) = f {
            @if *ok { p.ok role="status" { (m) } } @else { p.pesan role="alert" { (m) } }
        }
    }
}

/// The links between the console's pages.
pub(super) fn nav(caller: &Caller) -> Markup {
    html! {
        nav.tiket {
            a href="/papan" { "Papan status" }
            a href="/tiket" { "Antrian tiket" }
            @if may("/siaga.v1.Documents/GetRegister", caller) {
                a href="/register" { "Buku register" }
            }
            @if may("/siaga.v1.Tickets/NewTicket", caller) {
                a href="/tiket/baru" { "Tiket dari surat" }
            }
        }
    }
}

/// The queue's filters and page (all from the query string).
#[derive(Debug, Default, Deserialize)]
pub(super) struct QueueQuery {
    #[serde(default)]
    opd: String,
    #[serde(default)]
    langkah: String,
    #[serde(default)]
    terlambat: String,
    /// The page token of the open tickets.
    #[serde(default)]
    halaman: String,
    /// The page token of the tickets waiting on me.
    #[serde(default)]
    saya: String,
}

impl QueueQuery {
    /// The filters as a query string (without the page tokens).
    fn filters(&self) -> String {
        format!(
            "opd={}&langkah={}&terlambat={}",
            enc(&self.opd),
            enc(&self.langkah),
            enc(&self.terlambat)
        )
    }

    fn overdue(&self) -> bool {
        !self.terlambat.is_empty()
    }
}

/// `/tiket`: what waits on me first, then every open ticket I see.
pub(super) async fn queue(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> Response {
    let (s, caller) = match person(&web, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (flash, clear) = take_flash(&headers);
    let step = match q.langkah.trim() {
        "" => None,
        v => match v.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                return super::html(
                    StatusCode::BAD_REQUEST,
                    pages::notice("Permintaan tidak sah", "Langkah harus berupa angka."),
                    clear,
                );
            }
        },
    };
    let hub = web.hub.clone();
    let inbox = call(
        &web,
        &caller,
        LIST_INBOX,
        v1::ListInboxRequest {
            page_size: PAGE_SIZE,
            page_token: q.saya.clone(),
        },
        |r| async move {
            use siaga_proto::v1::sop_server::Sop as _;
            crate::sop::api::SopApi::new(hub).list_inbox(r).await
        },
    )
    .await;
    let hub = web.hub.clone();
    let open = call(
        &web,
        &caller,
        LIST_TICKETS,
        v1::ListTicketsRequest {
            page_size: PAGE_SIZE,
            page_token: q.halaman.clone(),
            opd: q.opd.trim().to_string(),
            state: v1::list_tickets_request::State::Open.into(),
            step,
            overdue: q.overdue(),
            mine: false,
        },
        |r| async move {
            use siaga_proto::v1::tickets_server::Tickets as _;
            crate::ticket::api::TicketsApi::new(hub)
                .list_tickets(r)
                .await
        },
    )
    .await;
    let (inbox, open) = match (inbox, open) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => return failed(&e),
    };
    // The inbox is the SOP's own list of what waits on me; the page's
    // filters narrow what it shows.
    let mine: Vec<v1::Ticket> = inbox
        .items
        .into_iter()
        .filter_map(|i| i.ticket)
        .filter(|t| {
            (q.opd.trim().is_empty() || t.opd == q.opd.trim())
                && step.is_none_or(|n| t.step == n)
                && (!q.overdue() || t.overdue)
        })
        .collect();
    let opds = super::register::opds_of(&web, &caller);
    let next_open = (!open.next_page_token.is_empty()).then(|| {
        format!(
            "/tiket?{}&saya={}&halaman={}",
            q.filters(),
            enc(&q.saya),
            enc(&open.next_page_token)
        )
    });
    let next_mine = (!inbox.next_page_token.is_empty()).then(|| {
        format!(
            "/tiket?{}&saya={}&halaman={}",
            q.filters(),
            enc(&inbox.next_page_token),
            enc(&q.halaman)
        )
    });
    let body = html! {
        style { (maud::PreEscaped(CSS)) }
        (nav(&caller))
        (flash_line(&flash))
        form.filter.kartu method="get" action="/tiket" {
            div {
                label for="opd" { "OPD" }
                select #opd name="opd" {
                    option value="" { "Semua" }
                    @for (id, name) in &opds {
                        option value=(id) selected[q.opd.trim() == id] { (name) }
                    }
                }
            }
            div {
                label for="langkah" { "Langkah" }
                input #langkah name="langkah" inputmode="numeric" size="3" value=(q.langkah);
            }
            div {
                label for="terlambat" {
                    input #terlambat type="checkbox" name="terlambat" value="1" checked[q.overdue()];
                    " Lewat standar waktu"
                }
            }
            button type="submit" { "Saring" }
        }
        section #saya {
            h2 { "Menunggu tindakan saya" }
            (ticket_table(&web, &mine, "Tidak ada tiket yang menunggu tindakan Anda."))
            @if let Some(href) = &next_mine { p { a href=(href) { "Berikutnya" } } }
        }
        section #terbuka {
            h2 { "Semua tiket terbuka" }
            (ticket_table(&web, &open.tickets, "Tidak ada tiket terbuka."))
            @if let Some(href) = &next_open { p { a.berikutnya href=(href) { "Berikutnya" } } }
        }
    };
    super::html(
        StatusCode::OK,
        pages::page("Antrian tiket", Some((&s.user, &s.csrf)), body),
        clear,
    )
}

fn ticket_table(web: &Web, tickets: &[v1::Ticket], empty: &str) -> Markup {
    html! {
        @if tickets.is_empty() {
            p.kartu { (empty) }
        } @else {
            div.tabel {
                table {
                    thead { tr { th { "Nomor" } th { "OPD" } th { "Masalah" } th { "Langkah" } th { "Giliran" } th { "Batas waktu" } } }
                    tbody {
                        @for t in tickets {
                            tr data-tiket=(t.id) {
                                td { a href=(format!("/tiket/{}", t.id)) { (t.id) } }
                                td { (t.opd) }
                                td { (t.problem) }
                                td { (t.step) }
                                td {
                                    (roles_text(web, &t.role))
                                    @if !t.assignee.is_empty() { " (" (t.assignee) ")" }
                                }
                                td class=(if t.overdue { "terlambat" } else { "" }) {
                                    (local(web, t.due_at.as_ref()))
                                    @if t.overdue { " · lewat standar waktu" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the viewer may do on a ticket now: the workflow's answer for the
/// ticket's own SOP, the measuring checks of `MeasureTicket`, and the
/// policy entry of each call.
#[derive(Debug, Clone, Default)]
pub(super) struct Actions {
    pub(super) sop: Permitted,
    pub(super) measure: bool,
    /// Whom the dispose form may name (`DisposeTicket`'s `to`), as the
    /// workflow would accept them: (user name, roles).
    pub(super) assignees: Vec<(String, Vec<String>)>,
}

/// [`Actions`] of `caller` on ticket `number` (none when they do not see it).
pub(super) async fn actions(web: &Web, caller: &Caller, number: &str) -> Actions {
    let hub = web.hub.clone();
    let who = caller.clone();
    let number = crate::sop::TicketNumber::typed(number);
    let found = tokio::task::spawn_blocking(move || {
        let health = &hub.health;
        let t = crate::api::scope::ticket(&who, &health.sop_store, &number).ok()?;
        let actor = crate::ticket::api::actor(&who);
        let sop =
            crate::sop::api::permitted(&health.sop_store, &t, &actor, chrono::Utc::now()).ok()?;
        let inv = hub.inventory();
        let measure = crate::measure::api::may_measure(health, &inv, &who, &number);
        let assignees = if sop.dispose {
            let mut people: Vec<crate::sop::workflow::Actor> = hub
                .users
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|u| crate::sop::workflow::Actor {
                    user: u.name.clone(),
                    roles: crate::role::ids(&u.roles),
                })
                .collect();
            people.sort_by(|a, b| a.user.cmp(&b.user));
            let names = crate::sop::api::assignees(
                &health.sop_store,
                &t,
                &actor,
                chrono::Utc::now(),
                &people,
            )
            .unwrap_or_default();
            people
                .into_iter()
                .filter(|p| names.contains(&p.user))
                .map(|p| (p.user, p.roles))
                .collect()
        } else {
            Vec::new()
        };
        Some(Actions {
            sop,
            measure,
            assignees,
        })
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    Actions {
        sop: Permitted {
            dispose: found.sop.dispose && may(DISPOSE, caller),
            review: found.sop.review && may(DISPOSE, caller),
            return_back: found.sop.return_back && may(RETURN, caller),
            update: found.sop.update && may(UPDATE, caller),
            acknowledge: found.sop.acknowledge && may(ACKNOWLEDGE, caller),
            ..found.sop
        },
        measure: found.measure && may(MEASURE, caller),
        assignees: found.assignees,
    }
}

/// Ticket `number` as `GetTicket` gives it to `caller`.
pub(super) async fn detail(
    web: &Web,
    caller: &Caller,
    number: &str,
) -> Result<v1::TicketDetail, Status> {
    let hub = web.hub.clone();
    call(
        web,
        caller,
        GET_TICKET,
        v1::GetTicketRequest {
            id: number.to_string(),
        },
        |r| async move {
            use siaga_proto::v1::tickets_server::Tickets as _;
            crate::ticket::api::TicketsApi::new(hub).get_ticket(r).await
        },
    )
    .await
}

/// `/tiket/{number}`: the ticket, its SOP timeline, its evidence and the
/// forms of what the viewer may do now.
pub(super) async fn ticket_page(
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
    let d = match detail(&web, &caller, &number).await {
        Ok(d) => d,
        Err(e) => return failed(&e),
    };
    let Some(t) = d.ticket.clone() else {
        return ticket_not_found();
    };
    let acts = actions(&web, &caller, &t.id).await;
    let (flash, clear) = take_flash(&headers);
    let body = html! {
        style { (maud::PreEscaped(CSS)) }
        (nav(&caller))
        (flash_line(&flash))
        (summary(&web, &t, &d))
        section #aksi {
            h2 { "Tindakan" }
            (action_forms(&t, &s.csrf, &acts))
        }
        section #linimasa {
            h2 { "Linimasa SOP" }
            (timeline(&web, &d.trail))
        }
        section #bukti {
            h2 { "Bukti" }
            (evidence(&web, &d))
        }
        p { a href=(format!("/tiket/{}/laporan", t.id)) { "Laporan pekerjaan" } }
    };
    super::html(
        StatusCode::OK,
        pages::page(&format!("Tiket {}", t.id), Some((&s.user, &s.csrf)), body),
        clear,
    )
}

fn summary(web: &Web, t: &v1::Ticket, d: &v1::TicketDetail) -> Markup {
    let problem = if d.problem_id.is_empty() {
        &t.problem
    } else {
        &d.problem_id
    };
    html! {
        div.kartu #ringkas {
            p { strong { (problem) } }
            dl {
                dt { "OPD" } dd { (t.opd) }
                @if !t.device.is_empty() { dt { "Perangkat" } dd { (t.device) @if !t.link.is_empty() { " · " (t.link) } } }
                @if !t.letter_number.is_empty() { dt { "Surat" } dd { (t.letter_number) } }
                dt { "Dibuka" } dd { (local(web, t.opened_at.as_ref())) }
                @if t.closed {
                    dt { "Ditutup" } dd #keadaan { (local(web, t.closed_at.as_ref()))
                        @if !t.void_reason.is_empty() { " · dibatalkan: " (t.void_reason) } }
                } @else {
                    dt { "Langkah sekarang" }
                    dd #langkah data-langkah=(t.step) {
                        (t.step) " · " (roles_text(web, &t.role))
                        @if !t.assignee.is_empty() { " (" (t.assignee) ")" }
                    }
                    dt { "Batas waktu" }
                    dd class=(if t.overdue { "terlambat" } else { "tepat" }) {
                        (local(web, t.due_at.as_ref()))
                        @if t.overdue { " · lewat standar waktu" } @else { " · dalam standar waktu" }
                    }
                }
                @if !t.status.is_empty() { dt { "Status" } dd { (t.status) } }
                @if !t.acknowledged_by.is_empty() { dt { "Diterima OPD" } dd { (t.acknowledged_by) } }
            }
        }
    }
}

fn action_forms(t: &v1::Ticket, csrf: &str, a: &Actions) -> Markup {
    let p = a.sop;
    let to = |what: &str| format!("/tiket/{}/{what}", t.id);
    html! {
        @if !(p.dispose || p.return_back || p.update || p.acknowledge || a.measure) {
            p.kartu { "Tidak ada tindakan Anda pada tiket ini sekarang." }
        } @else {
            div.aksi {
                @if p.dispose {
                    form #disposisi method="post" action=(to("disposisi")) {
                        input type="hidden" name="csrf" value=(csrf);
                        @if p.review {
                            p { strong { "Tinjauan Kepala Dinas" } " — membekukan laporan pekerjaan." }
                        } @else {
                            p { strong { "Disposisi" } " ke langkah berikutnya" }
                        }
                        @if !a.assignees.is_empty() {
                            label for="ke" { "Kepada (opsional)" }
                            select #ke name="ke" {
                                option value="" { "Siapa pun pada langkah berikutnya" }
                                @for (name, roles) in &a.assignees {
                                    option value=(name) { (name) " (" (roles.join(", ")) ")" }
                                }
                            }
                        }
                        label for="catatan" { "Catatan" }
                        textarea #catatan name="catatan" rows="2" {}
                        @if p.measurements {
                            label for="tanpa_ukur" { "Alasan tanpa pengukuran (bila tidak ada)" }
                            input #tanpa_ukur name="tanpa_ukur";
                        }
                        button type="submit" { @if p.review { "Tinjau dan setujui" } @else { "Disposisikan" } }
                    }
                }
                @if p.return_back {
                    form #kembalikan method="post" action=(to("kembalikan")) {
                        input type="hidden" name="csrf" value=(csrf);
                        p { strong { "Kembalikan" } " satu langkah" }
                        label for="alasan" { "Alasan" }
                        input #alasan name="alasan" required;
                        button type="submit" { "Kembalikan" }
                    }
                }
                @if p.update {
                    form #perbarui method="post" action=(to("status")) {
                        input type="hidden" name="csrf" value=(csrf);
                        p { strong { "Perbarui status" } }
                        label for="status" { "Status tindak lanjut" }
                        input #status name="status" required value=(t.status);
                        button type="submit" { "Simpan status" }
                    }
                }
                @if a.measure {
                    form #ukur method="post" action=(to("ukur")) {
                        input type="hidden" name="csrf" value=(csrf);
                        p { strong { "Mulai pengukuran" } }
                        label for="tahap" { "Tahap" }
                        select #tahap name="tahap" {
                            option value="before" { "Sebelum pekerjaan" }
                            option value="after" { "Sesudah pekerjaan" }
                        }
                        label for="antre" {
                            input #antre type="checkbox" name="antre" value="1";
                            " Antrekan bila agen sedang luring"
                        }
                        button type="submit" { "Ukur" }
                    }
                }
                @if p.acknowledge {
                    form #terima method="post" action=(to("terima")) {
                        input type="hidden" name="csrf" value=(csrf);
                        p { strong { "Terima laporan pekerjaan" } " (OPD)" }
                        label for="oleh" { "Nama, jabatan" }
                        input #oleh name="oleh" required;
                        button type="submit" { "Terima" }
                    }
                }
            }
        }
    }
}

fn kind_text(kind: v1::audit_event_kind::Kind) -> &'static str {
    use v1::audit_event_kind::Kind;
    match kind {
        Kind::Opened => "dibuka",
        Kind::Disposed => "didisposisikan",
        Kind::Returned => "dikembalikan",
        Kind::StatusUpdated => "status diperbarui",
        Kind::Acknowledged => "laporan diterima",
        Kind::Refused => "ditolak",
        Kind::Escalated => "dieskalasi",
        Kind::Voided => "dibatalkan",
        Kind::ReportFrozen => "laporan dibekukan",
        Kind::Unspecified => "peristiwa",
    }
}

fn timeline(web: &Web, trail: &[v1::AuditRecord]) -> Markup {
    use v1::audit_event::Detail;
    html! {
        ol.linimasa {
            @for r in trail {
                @if let Some(e) = &r.event {
                    li data-kind=(e.kind().word()) data-step=(e.step) data-user=(e.user) {
                        "Langkah " (e.step) " · " (kind_text(e.kind())) " oleh " strong { (e.user) }
                        @if !e.role.is_empty() { " (" (roles_text(web, &e.role.replace(',', " / "))) ")" }
                        @if !e.acting_for.is_empty() { " a.n. " (role_name(web, &e.acting_for)) }
                        " · " (local(web, e.at.as_ref()))
                        @match &e.detail {
                            Some(Detail::Disposed(d)) => {
                                " → langkah " (d.to_step)
                                @if let Some(u) = &d.to_user { " kepada " (u) }
                                @if let Some(t) = &d.timing { (timing(t)) }
                                @if let Some(n) = &d.note { br; em { (n) } }
                            }
                            Some(Detail::Returned(d)) => {
                                " → langkah " (d.to_step) ": " em { (d.reason) }
                                @if let Some(t) = &d.timing { (timing(t)) }
                            }
                            Some(Detail::StatusUpdated(d)) => { ": " em { (d.status) } }
                            Some(Detail::Acknowledged(d)) => { ": " (d.by) @if d.on_behalf { " (atas nama OPD)" } }
                            Some(Detail::Refused(d)) => { ": " em { (d.reason) } }
                            Some(Detail::Voided(d)) => { ": " em { (d.reason) } }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

fn timing(t: &v1::StepTiming) -> Markup {
    let hours = |s: i64| format!("{:.1} jam", s as f64 / 3600.0);
    html! {
        @if t.met {
            span.tepat { " · dalam standar waktu (" (hours(t.taken_secs)) " dari " (t.standard) ")" }
        } @else {
            span.terlambat { " · lewat standar waktu (" (hours(t.taken_secs)) " dari " (t.standard) ")" }
        }
    }
}

/// One finding of a reading: its problem, level by word, value and detail.
fn finding(f: &v1::Finding) -> Markup {
    html! {
        (f.problem) " " (f.level().word())
        @if f.value != 0.0 { " " (format!("{:.1}", f.value)) }
        @if !f.detail.is_empty() { " (" (f.detail) ")" }
    }
}

fn evidence(web: &Web, d: &v1::TicketDetail) -> Markup {
    html! {
        @if d.evidence.is_empty() && d.measurements.is_empty() {
            p.kartu { "Belum ada bukti atau pengukuran." }
        }
        @if !d.evidence.is_empty() {
            div.tabel { table {
                thead { tr { th { "Waktu" } th { "Perangkat" } th { "Temuan" } } }
                tbody {
                    @for r in &d.evidence {
                        tr {
                            td { (local(web, r.at.as_ref())) }
                            td { (r.sample.as_ref().map(|s| s.device.as_str()).unwrap_or("-")) }
                            td {
                                @for f in &r.findings {
                                    (finding(f))
                                    br;
                                }
                            }
                        }
                    }
                }
            } }
        }
        @if !d.measurements.is_empty() {
            h2 { "Pengukuran" }
            div.tabel { table {
                thead { tr { th { "Id" } th { "Tahap" } th { "Keadaan" } th { "Oleh" } th { "Waktu" } } }
                tbody {
                    @for m in &d.measurements {
                        tr {
                            td { (m.id) }
                            td { (match m.phase() { Phase::Before => "sebelum", Phase::After => "sesudah", Phase::Unspecified => "-" }) }
                            td { (m.state().word()) @if !m.error.is_empty() { ": " (m.error) } }
                            td { (m.requested_by) }
                            td { (local(web, m.requested_at.as_ref())) }
                        }
                    }
                }
            } }
        }
    }
}

/// The dispose form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct DisposeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    ke: String,
    #[serde(default)]
    catatan: String,
    #[serde(default)]
    tanpa_ukur: String,
    /// `laporan`: back to the report page rather than the ticket's.
    #[serde(default)]
    kembali: String,
}

/// The forms with one text field (return, status, acknowledge, measure).
#[derive(Debug, Deserialize)]
pub(super) struct TextForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    alasan: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    oleh: String,
    #[serde(default)]
    tahap: String,
    #[serde(default)]
    antre: String,
    /// `laporan`: back to the report page rather than the ticket's.
    #[serde(default)]
    kembali: String,
}

/// The common part of a ticket's form: the person, their token, the
/// number; then `act` (the service call), then back to the ticket with
/// what happened said, or the service's refusal.
async fn act<F, Fut>(
    web: Arc<Web>,
    headers: HeaderMap,
    raw: String,
    (csrf, kembali): (String, String),
    act: F,
) -> Response
where
    F: FnOnce(Arc<Web>, Caller, String) -> Fut,
    Fut: Future<Output = Result<String, Status>>,
{
    let (s, caller) = match person(&web, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refusal(&s, &csrf) {
        return r;
    }
    let Some(number) = number_of(&raw) else {
        return ticket_not_found();
    };
    let back = if kembali == "laporan" {
        format!("/tiket/{number}/laporan")
    } else {
        format!("/tiket/{number}")
    };
    match act(web, caller, number).await {
        Ok(done) => see_other(&back, vec![flash(true, &done)]),
        Err(e) if e.code() == Code::NotFound && e.message().starts_with("no ticket") => {
            ticket_not_found()
        }
        Err(e) => see_other(&back, vec![flash(false, e.message())]),
    }
}

fn moved(web: &Web, r: &v1::TicketActionResponse) -> String {
    match &r.ticket {
        Some(t) if t.closed => format!("Tiket {} selesai.", t.id),
        Some(t) => format!(
            "Tercatat. Tiket {} sekarang di langkah {} ({}).",
            t.id,
            t.step,
            roles_text(web, &t.role)
        ),
        None => "Tercatat.".into(),
    }
}

fn given(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_string())
}

/// `POST /tiket/{number}/disposisi`: `Sop/DisposeTicket`.
pub(super) async fn dispose(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<DisposeForm>,
) -> Response {
    act(
        web,
        headers,
        raw,
        (f.csrf, f.kembali),
        |web, caller, id| async move {
            let hub = web.hub.clone();
            let req = v1::DisposeTicketRequest {
                id,
                to: f.ke.trim().to_string(),
                note: given(&f.catatan),
                no_measurement_reason: given(&f.tanpa_ukur),
            };
            let r = call(&web, &caller, DISPOSE, req, |r| async move {
                use siaga_proto::v1::sop_server::Sop as _;
                crate::sop::api::SopApi::new(hub).dispose_ticket(r).await
            })
            .await?;
            Ok(moved(&web, &r))
        },
    )
    .await
}

/// `POST /tiket/{number}/kembalikan`: `Sop/ReturnTicket`.
pub(super) async fn return_back(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<TextForm>,
) -> Response {
    act(
        web,
        headers,
        raw,
        (f.csrf, f.kembali),
        |web, caller, id| async move {
            let hub = web.hub.clone();
            let req = v1::ReturnTicketRequest {
                id,
                reason: f.alasan,
            };
            let r = call(&web, &caller, RETURN, req, |r| async move {
                use siaga_proto::v1::sop_server::Sop as _;
                crate::sop::api::SopApi::new(hub).return_ticket(r).await
            })
            .await?;
            Ok(moved(&web, &r))
        },
    )
    .await
}

/// `POST /tiket/{number}/status`: `Tickets/UpdateTicket`.
pub(super) async fn update(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<TextForm>,
) -> Response {
    act(
        web,
        headers,
        raw,
        (f.csrf, f.kembali),
        |web, caller, id| async move {
            let hub = web.hub.clone();
            let req = v1::UpdateTicketRequest {
                id,
                status: f.status,
            };
            call(&web, &caller, UPDATE, req, |r| async move {
                use siaga_proto::v1::tickets_server::Tickets as _;
                crate::ticket::api::TicketsApi::new(hub)
                    .update_ticket(r)
                    .await
            })
            .await?;
            Ok("Status tercatat.".into())
        },
    )
    .await
}

/// `POST /tiket/{number}/terima`: `Sop/AcknowledgeTicket`.
pub(super) async fn acknowledge(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<TextForm>,
) -> Response {
    act(
        web,
        headers,
        raw,
        (f.csrf, f.kembali),
        |web, caller, id| async move {
            let hub = web.hub.clone();
            let req = v1::AcknowledgeTicketRequest { id, by: f.oleh };
            call(&web, &caller, ACKNOWLEDGE, req, |r| async move {
                use siaga_proto::v1::sop_server::Sop as _;
                crate::sop::api::SopApi::new(hub)
                    .acknowledge_ticket(r)
                    .await
            })
            .await?;
            Ok("Laporan pekerjaan diterima.".into())
        },
    )
    .await
}

/// `POST /tiket/{number}/ukur`: `Measure/MeasureTicket`.
pub(super) async fn measure(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<TextForm>,
) -> Response {
    act(
        web,
        headers,
        raw,
        (f.csrf, f.kembali),
        |web, caller, ticket| async move {
            let hub = web.hub.clone();
            let req = v1::MeasureTicketRequest {
                ticket,
                // Not a phase (a form changed by hand): unspecified, which
                // the service refuses with its own message.
                phase: f
                    .tahap
                    .parse::<v1::measurement::Phase>()
                    .map(i32::from)
                    .unwrap_or_default(),
                queue: !f.antre.is_empty(),
                ..Default::default()
            };
            let m = call(&web, &caller, MEASURE, req, |r| async move {
                use siaga_proto::v1::measure_server::Measure as _;
                crate::measure::api::MeasureApi::new(hub)
                    .measure_ticket(r)
                    .await
            })
            .await?;
            Ok(format!(
                "Pengukuran {} dimulai ({}).",
                m.id,
                m.state().word()
            ))
        },
    )
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test]
    fn a_finding_shows_its_level_by_word() {
        let f = v1::Finding {
            problem: "loss".into(),
            level: v1::finding::Level::Degraded.into(),
            value: 12.5,
            detail: "linkDown trap".into(),
            ..Default::default()
        };
        assert_eq!(
            finding(&f).into_string(),
            "loss degraded 12.5 (linkDown trap)"
        );
    }

    #[test_case("PJ-2026-0001", Some("PJ-2026-0001") ; "a number")]
    #[test_case(" pj-2026-0001 ", Some("PJ-2026-0001") ; "typed in lower case")]
    #[test_case("", None ; "empty")]
    #[test_case("PJ-2026-0001\r\nSet-Cookie: x=1", None ; "a header smuggled in")]
    #[test_case("../papan", None ; "a path")]
    #[test_case("PJ%2F1", None ; "escapes")]
    fn a_ticket_number_in_a_path(raw: &str, want: Option<&str>) {
        assert_eq!(number_of(raw).as_deref(), want);
    }

    #[test]
    fn a_long_number_is_not_a_ticket() {
        assert!(number_of(&"P".repeat(65)).is_none());
        assert!(number_of(&"P".repeat(64)).is_some());
    }

    #[test]
    fn a_flash_message_comes_back_once_as_it_was_said() {
        let said = "Tiket PJ-2026-0001 ditolak: «step 2»; a=b & c";
        let cookie = flash(false, said);
        let value = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&value).unwrap());
        let (got, clear) = take_flash(&headers);
        assert_eq!(got, Some((false, said.to_string())));
        assert!(clear[0].to_str().unwrap().contains("Max-Age=0"));
        assert_eq!(take_flash(&HeaderMap::new()).0, None);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(enc("PJ-2026_0001.x~"), "PJ-2026_0001.x~");
    }
}
