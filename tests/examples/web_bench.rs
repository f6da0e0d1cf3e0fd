//! The web console at a province's size: how long each page takes and how
//! big it is.
//!
//! ```text
//! cargo build --release -p siaga-collector -p siaga-cli --bins
//! cargo run --release -p siaga-tests --example web_bench
//! ```
//!
//! A real `siaga-collector` with the console on, holding 60 OPDs of 50
//! devices each (3,000), the last hour of samples of every device (one
//! every 30 s), a week of one sample a second of one device (604,800, for
//! the 7-day chart), and a year of letters: 3,000 tickets, 50 per OPD,
//! dated over the last 360 days. The samples are written straight into the
//! collector's store before it starts, as agents would have sent them; the
//! tickets are entered through the Tickets service, as the helpdesk does.
//!
//! Then one person (the Kepala Dinas, who sees every OPD) logs in and
//! opens each page (the board, an OPD, a device over 1 h / 24 h / 7 days,
//! the ticket queue, a ticket, its draft work report, and the Buku register
//! of the year as CSV: all 3,000 letters) `--rounds` times (default 100) after 5 warm-up
//! requests, one request at a time over one keep-alive HTTPS connection,
//! and the bench prints per page: median, 95th percentile and slowest time
//! from sending the request to the last byte of the answer (measured at the
//! client on loopback, so it holds the server's time plus a little TLS),
//! and the size of the HTML. Goals (the web console issue): p95 under
//! 100 ms for every page, the board under 200 KB. It prints whether each
//! holds and does not fail on them (these machines are shared and noisy).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use siaga_collector::store::{IngestBatch, RedbStore, Store as _};
use siaga_proto::v1;
use siaga_tests::harness::*;
use siaga_tests::province::{self, DEVICES_PER_OPD, OPDS, TICKETS_PER_OPD, device, opd};
use siaga_tests::web::Browser;

/// The device with a week of one sample a second.
const WEEK_DEVICE: &str = "opd01-d01";
const WEEK: u64 = 604_800;
const HOUR_EVERY_S: i64 = 30;

/// Writes the samples into the stopped collector's store.
fn write_samples(c: &Collector) -> Result<u64> {
    let now = chrono::Utc::now().timestamp_micros();
    let store = RedbStore::open(&c.data_dir)?;
    let mut written = 0u64;
    // A week of one sample a second of one device.
    let start = now - WEEK as i64 * 1_000_000;
    let mut seq = 0u64;
    while seq < WEEK {
        let samples: Vec<v1::Sample> = (0..50_000u64.min(WEEK - seq))
            .map(|i| {
                let n = seq + i + 1;
                icmp_sample(n, start + (n as i64 - 1) * 1_000_000, WEEK_DEVICE)
            })
            .collect();
        seq += samples.len() as u64;
        written += samples.len() as u64;
        store.commit(&[IngestBatch::new("opd01-agent", now, samples.into())], &[])?;
    }
    // The last hour of every other device, one OPD per commit.
    let per_hour = 3_600 / HOUR_EVERY_S;
    for o in 0..OPDS {
        let mut samples = Vec::new();
        for d in 0..DEVICES_PER_OPD {
            let name = device(o, d);
            if name == WEEK_DEVICE {
                continue;
            }
            for k in 0..per_hour {
                let ts = now - (per_hour - k) * HOUR_EVERY_S * 1_000_000;
                samples.push(icmp_sample(k as u64 + 1, ts, &name));
            }
        }
        written += samples.len() as u64;
        store.commit(
            &[IngestBatch::new(
                format!("{}-agent", opd(o)),
                now,
                samples.into(),
            )],
            &[],
        )?;
    }
    Ok(written)
}

/// Enters the year of letters through the Tickets service; the numbers of
/// the tickets opened.
async fn enter_letters(hd: &Siaga) -> Result<Vec<String>> {
    let ch = hd.tls()?.channel().await?;
    let today = chrono::Utc::now().date_naive();
    let mut numbers = Vec::new();
    // Four at a time: under the calls one person may have in flight.
    for o in 0..OPDS {
        let mut calls = Vec::new();
        for t in 0..TICKETS_PER_OPD {
            let mut client = v1::tickets_client::TicketsClient::new(ch.clone());
            let days_ago = (t * 360 / TICKETS_PER_OPD) as i64;
            let req = v1::NewTicketRequest {
                opd: opd(o),
                letter_number: format!("B/{}/{}/2026", t + 1, opd(o)),
                letter_date: (today - chrono::Duration::days(days_ago))
                    .format("%Y-%m-%d")
                    .to_string(),
                subject: format!("Gangguan jaringan di {} nomor {}", opd(o), t + 1),
                device: device(o, t % DEVICES_PER_OPD),
                ..Default::default()
            };
            calls.push(async move { client.new_ticket(req).await });
            if calls.len() == 4 {
                for r in futures::future::join_all(calls.drain(..)).await {
                    let t = r?.into_inner().ticket.context("a ticket")?;
                    numbers.push(t.id);
                }
            }
        }
        for r in futures::future::join_all(calls).await {
            numbers.push(r?.into_inner().ticket.context("a ticket")?.id);
        }
    }
    Ok(numbers)
}

/// Times `rounds` GETs of `path`, whose page must hold `marker`: sorted
/// durations and the body's size.
async fn time_page(
    b: &mut Browser,
    path: &str,
    marker: &str,
    rounds: usize,
) -> Result<(Vec<Duration>, usize)> {
    let mut size = 0;
    for _ in 0..5 {
        let (status, _, body) = b.get(path).await?;
        ensure!(status == 200, "GET {path}: HTTP {status}");
        ensure!(
            body.contains(marker),
            "GET {path}: no {marker:?} in the page:\n{}",
            body.chars().take(2_000).collect::<String>()
        );
        size = body.len();
    }
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let (status, _, body) = b.get(path).await?;
        times.push(t.elapsed());
        ensure!(status == 200, "GET {path}: {status}");
        size = body.len();
    }
    times.sort();
    Ok((times, size))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let rounds = province::rounds(100)?;
    let mut c = Collector::init()?;
    let mut inv = Inventory::new("30s");
    for o in 0..OPDS {
        inv = inv.opd(&opd(o));
        for d in 0..DEVICES_PER_OPD {
            inv = inv.device(
                &device(o, d),
                &opd(o),
                &format!("127.1.{}.{}", o + 1, d + 1),
            );
        }
    }
    c.write_inventory(&inv)?;
    c.enable_web()?;
    let root = c.enroll_user("root", "admin")?;
    let hd = c.enroll_user("hd", "helpdesk")?;
    c.enroll_user("kadis", "kepala_dinas")?;
    let t = Instant::now();
    let written = write_samples(&c)?;
    println!(
        "wrote {written} samples ({OPDS} OPDs × {DEVICES_PER_OPD} devices) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    c.serve()?;
    let out = root.run_stdin(&["user", "passwd", "kadis"], "rahasia-kadis-123\n")?;
    ensure!(out.status.success(), "user passwd: {out:?}");

    let rt = runtime()?;
    rt.block_on(async {
        let t = Instant::now();
        let tickets = enter_letters(&hd).await?;
        println!(
            "entered {} tickets in {:.1} s",
            tickets.len(),
            t.elapsed().as_secs_f64()
        );
        let mut b = Browser::new(&c)?;
        let (status, _, body) = b.log_in("kadis", "rahasia-kadis-123").await?;
        ensure!(status == 303, "login: {status}\n{body}");
        let middle = &tickets[tickets.len() / 2];
        let other = device(OPDS / 2, 1);
        let day = |ago: i64| {
            (chrono::Utc::now().date_naive() - chrono::Duration::days(ago))
                .format("%Y-%m-%d")
                .to_string()
        };
        // Tickets are dated in the collector's zone (WIB by default), which
        // can already be tomorrow in UTC: the periods end tomorrow.
        let (today, year_ago) = (day(-1), day(365));
        // Each page with a mark of its own content: a page that answers
        // 200 with something else is not measured as that page.
        let pages = [
            ("Papan status", "/papan".to_string(), "data-opd=\"opd60\""),
            ("OPD", format!("/opd/{}", opd(OPDS / 2)), other.as_str()),
            (
                "Perangkat, 1 jam",
                format!("/perangkat/{WEEK_DEVICE}?rentang=1j"),
                "<svg",
            ),
            (
                "Perangkat, 24 jam",
                format!("/perangkat/{WEEK_DEVICE}?rentang=24j"),
                "<svg",
            ),
            (
                "Perangkat, 7 hari",
                format!("/perangkat/{WEEK_DEVICE}?rentang=7h"),
                "<svg",
            ),
            ("Antrian tiket", "/tiket".to_string(), "data-tiket="),
            ("Tiket", format!("/tiket/{middle}"), "linimasa"),
            ("Laporan (draf)", format!("/tiket/{middle}/laporan"), "Draf"),
            // Every letter was entered today: the register of the year
            // holds all 3,000 of them.
            (
                "Buku register, CSV",
                format!("/register?dari={year_ago}&sampai={today}&format=csv"),
                "OPD",
            ),
        ];
        println!(
            "\n{rounds} requests per page, one at a time, keep-alive HTTPS on loopback, \
             as kepala_dinas (every OPD):\n"
        );
        println!(
            "{:<22} {:>10} {:>10} {:>10} {:>10}  goal",
            "page", "median ms", "p95 ms", "max ms", "KB"
        );
        let mut all_hold = true;
        for (name, path, marker) in pages {
            match time_page(&mut b, &path, marker, rounds).await {
                Ok((times, size)) => {
                    let p95 = times[(times.len() * 95).div_ceil(100) - 1];
                    let size_goal = name != "Papan status" || size < 200 * 1024;
                    let holds = ms(p95) < 100.0 && size_goal;
                    all_hold &= holds;
                    println!(
                        "{name:<22} {:>10.1} {:>10.1} {:>10.1} {:>10.1}  {}",
                        ms(times[times.len() / 2]),
                        ms(p95),
                        ms(times[times.len() - 1]),
                        size as f64 / 1024.0,
                        if holds { "holds" } else { "MISSED" }
                    );
                }
                Err(e) => {
                    all_hold = false;
                    println!("{name:<22} not measured: {e:#}");
                }
            }
        }
        println!(
            "\ngoals (p95 < 100 ms every page, board < 200 KB): {}",
            if all_hold { "all hold" } else { "NOT all hold" }
        );
        anyhow::Ok(())
    })?;
    ensure!(c.stop(), "the collector did not stop cleanly");
    Ok(())
}
