//! The device page (`/perangkat/{id}`): the device's state and charts of
//! its round trip, loss and jitter — and of each of its links' utilisation
//! and errors — over the last hour, day or week, drawn on the server
//! ([`super::chart`]). The last hour is folded from the raw samples, read
//! range by range as History reads them; a day or a week from the
//! per-minute rollups the store keeps ([`crate::rollup`]): 10,080 rows for
//! a week whatever the probe interval, in buckets of whole minutes, which
//! hold the same readings as folding the raw samples into them. Neither is
//! in memory at once.
//!
//! The period links are plain links that htmx, where the browser runs
//! it, turns into a swap of the chart area (`#grafik`) alone, with the
//! period's address pushed into the history: such a request (`HX-Request`)
//! is answered with that area only.
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
use crate::rollup::{MINUTE_US, Minute, icmp_readings, minute_of};
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

    /// Whether its chart is read from the per-minute rollups (longer
    /// than an hour).
    pub fn from_rollups(self) -> bool {
        self != Period::Hour
    }

    /// The frame of this period up to `now_us`: to the microsecond for
    /// raw samples; for rollups, whole minutes up to the end of the
    /// current one.
    pub fn frame(self, now_us: i64) -> Frame {
        if self.from_rollups() {
            let until = minute_of(now_us) + MINUTE_US;
            Frame::grained(until - self.span_us(), until, MINUTE_US)
        } else {
            Frame::new(now_us - self.span_us(), now_us)
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
                let [rtt, loss, jitter] = icmp_readings(i);
                for (series, r) in [
                    (&mut self.rtt, rtt),
                    (&mut self.loss, loss),
                    (&mut self.jitter, jitter),
                ] {
                    if let Some((lo, v, hi)) = r {
                        series.add_span(&f, t, lo, v, hi);
                    }
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

    /// Folds one minute's rollup in (links by the name the agent gave
    /// their interface).
    fn add_minute(&mut self, m: &Minute) {
        let f = self.frame;
        let t = m.start_us;
        self.rtt.add_fold(&f, t, &m.rtt);
        self.loss.add_fold(&f, t, &m.loss);
        self.jitter.add_fold(&f, t, &m.jitter);
        for c in &mut self.links {
            if let Some(l) = m.link(&c.name) {
                c.util[0].add_fold(&f, t, &l.util_in);
                c.util[1].add_fold(&f, t, &l.util_out);
                c.errors.add_fold(&f, t, &l.errors);
            }
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

/// The charts of `device` over `frame` (a frame of whole minutes) from
/// the store's per-minute rollups, read range by range.
pub fn fold_minutes(
    store: &dyn Store,
    device: &str,
    links: &[&Link],
    frame: Frame,
) -> Result<Charts, crate::error::StoreError> {
    let mut charts = Charts::new(frame, links);
    let mut from = frame.from_us;
    loop {
        let rows = store.minutes(device, from, frame.until_us, READ_CHUNK)?;
        for m in &rows {
            charts.add_minute(m);
        }
        match rows.last() {
            Some(last) if rows.len() == READ_CHUNK => from = last.start_us + 1,
            _ => return Ok(charts),
        }
    }
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
        Ok(Ok(v)) if swaps_charts(&headers) => page_response(
            StatusCode::OK,
            charts_area(&v, cal.offset(), cal.zone_abbr()),
            vec![],
        ),
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
    let frame = period.frame(now_us);
    let charts = if period.from_rollups() {
        fold_minutes(hub.store.as_ref(), &d.id, &links, frame)
    } else {
        fold(hub.store.as_ref(), &d.id, &links, frame)
    }
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

/// Whether htmx asks for the chart area alone: its own request, not the
/// one that restores a page missing from its history cache (that one
/// needs the whole page).
fn swaps_charts(headers: &HeaderMap) -> bool {
    let is = |name: &str| headers.get(name).is_some_and(|v| v.as_bytes() == b"true");
    is("hx-request") && !is("hx-history-restore-request")
}

/// The period links and the charts: what a period link swaps.
pub fn charts_area(v: &DeviceView, zone: chrono::FixedOffset, abbr: &str) -> Markup {
    let c = &v.charts;
    let f = &c.frame;
    let here = format!("/perangkat/{}", segment(&v.info.id));
    html! {
        div #grafik {
            nav.rentang aria-label="Rentang waktu" hx-target="#grafik" hx-swap="outerHTML"
                hx-push-url="true" {
                @for p in Period::ALL {
                    @let to = format!("{here}?rentang={}", p.param());
                    @if p == v.period {
                        a href=(to) hx-get=(to) aria-current="page" { (p.label()) }
                    } @else {
                        a href=(to) hx-get=(to) { (p.label()) }
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
        }
    }
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
            (charts_area(v, zone, abbr))
            (pages::htmx())
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{IngestBatch, RedbStore};
    use crate::web::chart::Agg;

    const NOW: i64 = 1_780_000_000_000_000 + 17_345_678;

    /// A reading at second `k` of the dataset: values that vary, a probe
    /// that failed before sending now and then.
    fn sample(seq: u64, ts_us: i64, k: i64) -> v1::Sample {
        if k % 11 == 0 {
            return v1::Sample {
                seq,
                ts_us,
                device: "d".into(),
                kind: Some(Kind::Snmp(v1::SnmpResult {
                    interfaces: vec![
                        v1::Interface {
                            if_index: 1,
                            link_name: "uplink".into(),
                            util_in_pct: Some((k % 97) as f64 / 3.0),
                            util_out_pct: Some((k % 13) as f64),
                            errors_per_s: (k % 5 != 0).then_some((k % 4) as f64),
                            ..Default::default()
                        },
                        v1::Interface {
                            if_index: 2,
                            util_in_pct: Some(99.0),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                })),
            };
        }
        let avg = 700 + (k * 7919 % 5_000) as u64;
        let failed = k % 23 == 0;
        v1::Sample {
            seq,
            ts_us,
            device: "d".into(),
            kind: Some(Kind::Icmp(v1::IcmpResult {
                sent: if failed { 0 } else { 4 },
                error: if failed {
                    "no route".into()
                } else {
                    String::new()
                },
                loss_pct: (k % 4 * 25) as f64,
                rtt_min_us: (!failed).then_some(avg / 3),
                rtt_avg_us: (!failed).then_some(avg),
                rtt_max_us: (k % 3 != 0 && !failed).then_some(avg * 3),
                jitter_us: (k % 2 == 0).then_some(avg / 5),
                ..Default::default()
            })),
        }
    }

    /// Two days of samples every 7 s ending at [`NOW`], with gaps, a day
    /// of them arriving late (after the newer ones), a resend of some with
    /// other bodies, and one older than a week.
    fn seed(store: &RedbStore) {
        let day = 86_400;
        let at = |k: i64| NOW - 2 * day * 1_000_000 + k * 1_000_000 + 123;
        let gap = |k: i64| (30_000..33_000).contains(&k) || (100_000..101_000).contains(&k);
        let all: Vec<(u64, i64, i64)> = (0..2 * day)
            .step_by(7)
            .filter(|k| !gap(*k))
            .enumerate()
            .map(|(i, k)| (i as u64 + 1, at(k), k))
            .collect();
        let (early, late): (Vec<_>, Vec<_>) = all.iter().partition(|(_, _, k)| *k >= day);
        for part in [&early, &late] {
            for chunk in part.chunks(5_000) {
                let samples: Vec<v1::Sample> =
                    chunk.iter().map(|(q, t, k)| sample(*q, *t, *k)).collect();
                store
                    .commit(&[IngestBatch::new("a", NOW, samples.into())], &[])
                    .unwrap();
            }
        }
        // Resent with other values: the store keeps the first.
        let resent: Vec<v1::Sample> = all
            .iter()
            .step_by(50)
            .map(|(q, t, k)| sample(*q, *t, k + 1))
            .collect();
        let o = store
            .commit(&[IngestBatch::new("a", NOW, resent.into())], &[])
            .unwrap();
        assert!(o[0].duplicates > 100 && o[0].stored == 0, "{o:?}");
        let old = vec![sample(1, NOW - 8 * day * 1_000_000, 1)];
        store
            .commit(&[IngestBatch::new("b", NOW, old.into())], &[])
            .unwrap();
    }

    fn same(name: &str, raw: &[Agg], rolled: &[Agg]) {
        assert_eq!(raw.len(), rolled.len(), "{name}");
        for (b, (r, m)) in raw.iter().zip(rolled).enumerate() {
            assert_eq!(
                (r.n, r.min, r.max),
                (m.n, m.min, m.max),
                "{name} bucket {b}"
            );
            match (r.avg(), m.avg()) {
                (Some(x), Some(y)) => {
                    assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{name} {b}")
                }
                (x, y) => assert_eq!(x, y, "{name} bucket {b}"),
            }
        }
    }

    #[test]
    fn charts_from_rollups_have_the_buckets_of_the_raw_samples() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        seed(&store);
        let uplink = Link {
            device: "d".into(),
            interface: String::new(),
            if_index: 1,
            name: "uplink".into(),
        };
        let links = [&uplink];
        for period in [Period::Day, Period::Week] {
            let frame = period.frame(NOW);
            assert_eq!(frame.n, crate::web::chart::BUCKETS);
            let raw = fold(&store, "d", &links, frame).unwrap();
            let rolled = fold_minutes(&store, "d", &links, frame).unwrap();
            let pairs = [
                ("rtt", &raw.rtt, &rolled.rtt),
                ("loss", &raw.loss, &rolled.loss),
                ("jitter", &raw.jitter, &rolled.jitter),
                ("util in", &raw.links[0].util[0], &rolled.links[0].util[0]),
                ("util out", &raw.links[0].util[1], &rolled.links[0].util[1]),
                ("errors", &raw.links[0].errors, &rolled.links[0].errors),
            ];
            for (name, r, m) in pairs {
                same(name, &r.buckets, &m.buckets);
                // Readings there, and the gaps empty.
                assert!(
                    r.filled() > 40 && r.filled() < frame.n,
                    "{name}: {}",
                    r.filled()
                );
            }
        }
    }
}
