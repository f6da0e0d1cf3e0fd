//! The OPD page (`/opd/{id}`): one OPD's devices and links with their
//! state and newest readings, and its open tickets. Read as
//! Devices/ListDevices, Devices/ListLinks and Tickets/ListTickets read them
//! (their policy entries, the Devices service's own listings); an OPD the
//! person does not see is missing.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, PreEscaped, html};
use siaga_proto::v1;

use super::access::{self, failed, missing, person, refused, segment, state_class, state_word};
use super::{Web, html as page_response, pages};
use crate::api::{ApiError, Caller, scope};
use crate::hub::Hub;

/// One open ticket of the OPD, as the page lists it.
#[derive(Debug, Clone)]
pub struct OpenTicket {
    /// Its number.
    pub number: String,
    /// The problem, as documents write it.
    pub problem: String,
    /// Device or link concerned, if any.
    pub subject: String,
    /// Opened, local time.
    pub opened: String,
}

/// What the page shows.
#[derive(Debug, Clone)]
pub struct OpdView {
    /// OPD id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its devices with their state and newest ICMP reading.
    pub devices: Vec<v1::DeviceInfo>,
    /// Its links with their newest SNMP reading.
    pub links: Vec<v1::LinkInfo>,
    /// Its open tickets, oldest first.
    pub tickets: Vec<OpenTicket>,
    /// When, local time.
    pub at: String,
}

/// `/opd/{id}`.
pub(super) async fn opd_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (s, caller) = match person(&web, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rpcs = [
        "/siaga.v1.Devices/ListDevices",
        "/siaga.v1.Devices/ListLinks",
        "/siaga.v1.Tickets/ListTickets",
    ];
    if let Some(r) = refused(&rpcs, &caller) {
        return r;
    }
    if id.chars().count() > crate::api::limits::len::ID {
        return missing();
    }
    let hub = web.hub.clone();
    let cal = web.calendar.clone();
    let view = tokio::task::spawn_blocking(move || read(&hub, &cal, &caller, &id)).await;
    match view {
        Ok(Ok(v)) => page_response(StatusCode::OK, render(&s.user, &s.csrf, &v), vec![]),
        Ok(Err(e)) => failed("opd", e),
        Err(e) => failed("opd", ApiError::internal("the OPD page task", e)),
    }
}

/// The OPD `id` as `caller` sees it (another OPD's is not found).
pub fn read(
    hub: &Hub,
    cal: &crate::sop::Calendar,
    caller: &Caller,
    id: &str,
) -> Result<OpdView, ApiError> {
    let inv = hub.inventory();
    let opd = match inv.opds.get(id) {
        Some(o) if scope::listed(caller, &o.id) => o,
        _ => return Err(ApiError::NotFound(format!("no OPD {id:?}"))),
    };
    let only = Some(opd.id.clone());
    let devices = crate::devices::api::board_devices(hub, caller, &only)?;
    let links = crate::devices::api::link_rows(hub, |o| o == opd.id && scope::listed(caller, o))?;
    let mut tickets: Vec<(chrono::DateTime<chrono::Utc>, OpenTicket)> = hub
        .health
        .sop_store
        .list()
        .map_err(|e| ApiError::internal("listing the tickets", e))?
        .into_iter()
        .filter(|t| t.info.opd == opd.id && scope::listed(caller, &t.info.opd))
        .filter(|t| !t.state.is_closed())
        .map(|t| {
            let subject = match (&t.info.device, &t.info.link) {
                (Some(d), Some(l)) => format!("{d} / {l}"),
                (Some(d), None) => d.clone(),
                (None, Some(l)) => l.clone(),
                (None, None) => String::new(),
            };
            (
                t.info.opened_at,
                OpenTicket {
                    number: t.info.number.clone(),
                    problem: t.info.problem_text(crate::sop::Lang::Id, cal),
                    subject,
                    opened: format!("{} {}", cal.fmt_local(t.info.opened_at), cal.zone_abbr()),
                },
            )
        })
        .collect();
    tickets.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.number.cmp(&b.1.number)));
    Ok(OpdView {
        id: opd.id.clone(),
        name: opd.name.clone(),
        devices,
        links,
        tickets: tickets.into_iter().map(|(_, t)| t).collect(),
        at: format!("{} {}", cal.fmt_local(chrono::Utc::now()), cal.zone_abbr()),
    })
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_string(), |v| format!("{v:.decimals$}"))
}

/// The page of `v` for `user`.
pub fn render(user: &str, csrf: &str, v: &OpdView) -> Markup {
    pages::page(
        &v.name,
        Some((user, csrf)),
        html! {
            style { (PreEscaped(access::CSS)) }
            p { a href="/papan" { "← Papan status" } " · Per " (v.at) "." }
            h2 { "Perangkat" }
            @if v.devices.is_empty() {
                p.kartu { "OPD ini tidak mempunyai perangkat." }
            } @else {
                div.gulung {
                    table.perangkat {
                        thead { tr {
                            th { "Perangkat" } th { "Keadaan" }
                            th.angka { "RTT (ms)" } th.angka { "Hilang (%)" } th.angka { "Jitter (ms)" }
                            th { "Alamat" }
                        } }
                        tbody {
                            @for d in &v.devices {
                                tr data-perangkat=(d.id) {
                                    td { a href={ "/perangkat/" (segment(&d.id)) } {
                                        (if d.name.is_empty() { &d.id } else { &d.name })
                                    } }
                                    td class={ "keadaan " (state_class(d.state())) } { (state_word(d.state())) }
                                    td.angka { (num(d.rtt_ms, 1)) }
                                    td.angka { (num(d.loss_pct, 0)) }
                                    td.angka { (num(d.jitter_ms, 1)) }
                                    td { (d.address) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Tautan" }
            @if v.links.is_empty() {
                p.kartu { "OPD ini tidak mempunyai tautan yang dipantau." }
            } @else {
                div.gulung {
                    table.tautan {
                        thead { tr {
                            th { "Tautan" } th { "Perangkat" } th { "Antarmuka" } th { "Status" }
                            th.angka { "Masuk (%)" } th.angka { "Keluar (%)" } th.angka { "Galat/detik" }
                        } }
                        tbody {
                            @for l in &v.links {
                                tr data-tautan=(l.name) {
                                    td { (l.name) }
                                    td { a href={ "/perangkat/" (segment(&l.device)) } { (l.device) } }
                                    td { (l.interface) }
                                    td { (if l.oper_status().is_set() { l.oper_status().word() } else { "–" }) }
                                    td.angka { (num(l.util_in_pct, 1)) }
                                    td.angka { (num(l.util_out_pct, 1)) }
                                    td.angka { (num(l.errors_per_s, 2)) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Tiket terbuka" }
            @if v.tickets.is_empty() {
                p.kartu { "Tidak ada tiket terbuka." }
            } @else {
                div.gulung {
                    table.tiket {
                        thead { tr { th { "Nomor" } th { "Masalah" } th { "Perangkat" } th { "Dibuka" } } }
                        tbody {
                            @for t in &v.tickets {
                                tr {
                                    td { (t.number) }
                                    td style="white-space:normal" { (t.problem) }
                                    td { (t.subject) }
                                    td { (t.opened) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
