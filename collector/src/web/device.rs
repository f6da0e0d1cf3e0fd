//! The device page (`/perangkat/{id}`): the device's state and charts of
//! its round trip, loss and jitter — and of each of its links' utilisation
//! and errors — over the last hour, day or week, drawn on the server
//! ([`super::chart`]). The samples are read range by range as History
//! reads them and folded into the charts' buckets as they come: a week of
//! one-second samples is never in memory at once.
//!
//! Held to Devices/History's policy entry and the device scope the
//! service uses: another OPD's device is missing.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use siaga_proto::v1::{self, sample::Kind};

use super::access::{self, failed, missing, person, refused, segment, state_class, state_word};
use super::chart::{Frame, Series, chart};
use super::{Web, html as page_response, pages};
use crate::api::{ApiError, Caller, scope};
use crate::hub::Hub;
use crate::inventory::Link;
use crate::store::Store;

/// Samples read from the store at once.
const READ_CHUNK: usize = 2048;

/// Chart reads at once: a week of a one-second device is 604,800 samples
/// to fold; more pages asking at once wait for a turn rather than take
/// every blocking thread.
static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The periods a person can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The last hour.
    Hour,
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
}

impl Period {
    const ALL: [Period; 3] = [Period::Hour, Period::Day, Period::Week];

    /// From the `rentang` parameter (`1j`, `24j`, `7h`); anything else is a day.
    pub fn parse(s: &str) -> Period {
        match s {
            "1j" => Period::Hour,
            "7h" => Period::Week,
            _ => Period::Day,
        }
    }

    fn param(self) -> &'static str {
        match self {
            Period::Hour => "1j",
            Period::Day => "24j",
            Period::Week => "7h",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Period::Hour => "1 jam",
            Period::Day => "24 jam",
            Period::Week => "7 hari",
        }
    }

    /// Its length in µs.
    pub fn span_us(self) -> i64 {
        let hours = match self {
            Period::Hour => 1,
            Period::Day => 24,
            Period::Week => 7 * 24,
        };
        hours * 3_600_000_000
    }
}

/// One link's charts.
#[derive(Debug, Clone)]
pub struct LinkCharts {
    /// The link's name.
    pub name: String,
    /// Utilisation in and out, percent.
    pub util: [Series; 2],
    /// Errors per second.
    pub errors: Series,
}

/// A device's charts over one frame.
#[derive(Debug, Clone)]
pub struct Charts {
    /// The period.
    pub frame: Frame,
    /// Round trip: band from the probes' minimum to maximum, line of their average.
    pub rtt: Series,
    /// Loss, percent.
    pub loss: Series,
    /// Jitter.
    pub jitter: Series,
    /// Per link of the device.
    pub links: Vec<LinkCharts>,
}

impl Charts {
    fn new(frame: Frame, links: &[&Link]) -> Charts {
        Charts {
            frame,
            rtt: Series::new("RTT", "#1f5fae", &frame),
            loss: Series::new("Hilang", "#c62828", &frame),
            jitter: Series::new("Jitter", "#6a3d9a", &frame),
            links: links
                .iter()
                .map(|l| LinkCharts {
                    name: l.name.clone(),
                    util: [
                        Series::new("Masuk", "#1f5fae", &frame),
                        Series::new("Keluar", "#e07b00", &frame),
                    ],
                    errors: Series::new("Galat", "#c62828", &frame),
                })
                .collect(),
        }
    }

    /// Folds one stored sample in.
    fn add(&mut self, s: &v1::Sample, links: &[&Link]) {
        let f = self.frame;
        let t = s.ts_us;
        match &s.kind {
            Some(Kind::Icmp(i)) => {
                if i.error.is_empty() || i.sent > 0 {
                    self.loss.add(&f, t, i.loss_pct);
                }
                let ms = |us: Option<u64>| us.map(|v| v as f64 / 1000.0);
                if let Some(avg) = ms(i.rtt_avg_us) {
                    let lo = ms(i.rtt_min_us).unwrap_or(avg);
                    let hi = ms(i.rtt_max_us).unwrap_or(avg);
                    self.rtt.add_span(&f, t, lo, avg, hi);
                }
                if let Some(j) = ms(i.jitter_us) {
                    self.jitter.add(&f, t, j);
                }
            }
            Some(Kind::Snmp(snmp)) => {
                for (l, c) in links.iter().zip(self.links.iter_mut()) {
                    let Some(i) = crate::devices::api::link_interface(l, snmp) else {
                        continue;
                    };
                    if let Some(v) = i.util_in_pct {
                        c.util[0].add(&f, t, v);
                    }
                    if let Some(v) = i.util_out_pct {
                        c.util[1].add(&f, t, v);
                    }
                    if let Some(v) = i.errors_per_s {
                        c.errors.add(&f, t, v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The charts of `device` (with its inventory `links`) over `frame`, read
/// from `store` range by range and folded as they come.
pub fn fold(
    store: &dyn Store,
    device: &str,
    links: &[&Link],
    frame: Frame,
) -> Result<Charts, crate::error::StoreError> {
    let mut charts = Charts::new(frame, links);
    crate::devices::api::each_history_range(
        store,
        device,
        frame.from_us,
        frame.until_us,
        READ_CHUNK,
        |rows| {
            for r in rows {
                charts.add(&r.sample, links);
            }
            true
        },
    )?;
    Ok(charts)
}

/// What the page shows.
#[derive(Debug, Clone)]
pub struct DeviceView {
    /// The device as ListDevices shows it.
    pub info: v1::DeviceInfo,
    /// Its OPD's name.
    pub opd_name: String,
    /// The period shown.
    pub period: Period,
    /// The charts.
    pub charts: Charts,
}

/// The `rentang` parameter.
#[derive(Debug, Deserialize)]
pub(super) struct RangeQuery {
    #[serde(default)]
    rentang: String,
}

/// `/perangkat/{id}`.
pub(super) async fn device_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let (s, caller) = match person(&web, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rpcs = ["/siaga.v1.Devices/GetDevice", "/siaga.v1.Devices/History"];
    if let Some(r) = refused(&rpcs, &caller) {
        return r;
    }
    if id.chars().count() > crate::api::limits::len::ID {
        return missing();
    }
    let period = Period::parse(&q.rentang);
    let Ok(_turn) = READS.acquire().await else {
        return failed(
            "device",
            ApiError::internal("the chart reads", anyhow::anyhow!("closed")),
        );
    };
    let hub = web.hub.clone();
    let view = tokio::task::spawn_blocking(move || {
        let now = crate::ingest::now_us();
        read(&hub, &caller, &id, period, now)
    })
    .await;
    let cal = &web.calendar;
    match view {
        Ok(Ok(v)) => page_response(
            StatusCode::OK,
            render(&s.user, &s.csrf, &v, cal.offset(), cal.zone_abbr()),
            vec![],
        ),
        Ok(Err(e)) => failed("device", e),
        Err(e) => failed("device", ApiError::internal("the device page task", e)),
    }
}

/// Device `id` as `caller` sees it over the `period` up to `now_us`
/// (another OPD's device is not found, as a missing one).
pub fn read(
    hub: &Hub,
    caller: &Caller,
    id: &str,
    period: Period,
    now_us: i64,
) -> Result<DeviceView, ApiError> {
    let inv = hub.inventory();
    let d = scope::device(caller, &inv, id)?;
    let info = crate::devices::api::board_devices(hub, caller, &Some(d.opd.clone()))?
        .into_iter()
        .find(|i| i.id == d.id)
        .ok_or_else(|| scope::no_device(id))?;
    let links: Vec<&Link> = inv.links.iter().filter(|l| l.device == d.id).collect();
    let frame = Frame::new(now_us - period.span_us(), now_us);
    let charts = fold(hub.store.as_ref(), &d.id, &links, frame)
        .map_err(|e| ApiError::internal("reading the history", e))?;
    Ok(DeviceView {
        info,
        opd_name: inv
            .opds
            .get(&d.opd)
            .map_or_else(|| d.opd.clone(), |o| o.name.clone()),
        period,
        charts,
    })
}

fn num(v: Option<f64>, decimals: usize, unit: &str) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_string(), |v| format!("{v:.decimals$} {unit}"))
}

/// The page of `v` for `user`, times in `zone` (`abbr`).
pub fn render(
    user: &str,
    csrf: &str,
    v: &DeviceView,
    zone: chrono::FixedOffset,
    abbr: &str,
) -> Markup {
    let d = &v.info;
    let c = &v.charts;
    let f = &c.frame;
    let title = if d.name.is_empty() { &d.id } else { &d.name };
    pages::page(
        title,
        Some((user, csrf)),
        html! {
            style { (PreEscaped(access::CSS)) }
            p {
                a href="/papan" { "Papan status" } " › "
                a href={ "/opd/" (segment(&d.opd)) } { (v.opd_name) } " › " (d.id)
            }
            div.kartu {
                p {
                    "Keadaan: " span class={ "keadaan " (state_class(d.state())) } { (state_word(d.state())) }
                    " · " (d.kind) " · " (d.address)
                }
                p {
                    "Terakhir: RTT " (num(d.rtt_ms, 1, "ms"))
                    " · hilang " (num(d.loss_pct, 0, "%"))
                    " · jitter " (num(d.jitter_ms, 1, "ms"))
                }
            }
            nav.rentang aria-label="Rentang waktu" {
                @for p in Period::ALL {
                    @if p == v.period {
                        a href={ "?rentang=" (p.param()) } aria-current="page" { (p.label()) }
                    } @else {
                        a href={ "?rentang=" (p.param()) } { (p.label()) }
                    }
                }
            }
            (chart("Waktu pulang-pergi (RTT)", "ms", f, std::slice::from_ref(&c.rtt), zone, abbr))
            (chart("Paket hilang", "%", f, std::slice::from_ref(&c.loss), zone, abbr))
            (chart("Jitter", "ms", f, std::slice::from_ref(&c.jitter), zone, abbr))
            @for l in &c.links {
                (chart(&format!("Utilisasi tautan {}", l.name), "%", f, &l.util, zone, abbr))
                (chart(&format!("Galat tautan {}", l.name), "per detik", f,
                    std::slice::from_ref(&l.errors), zone, abbr))
            }
        },
    )
}
