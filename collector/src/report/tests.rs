//! The report of a ticket walked through the chain, with measurements before
//! and after the work: content, language, escaping, drafts, freezing,
//! reproducibility and tampering.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use redb::Database;

use super::*;
use crate::health::state::Finding;
use crate::health::{Level, Problem, Reading};
use crate::measure::model::{DeviceFigures, LinkFigures, MeasureState, Measurement, Phase};
use crate::sop::Calendar;
use crate::sop::file::DEFAULT_SOP;
use crate::sop::workflow::tests::{user_for, wib};
use crate::sop::workflow::{Action, Actor, Measurements, Origin, TicketInfo};
use crate::ticket::store::{TicketHealth, TicketNote};

const T: &str = "PJ-2026-0001";

struct Office {
    _dir: tempfile::TempDir,
    db: Arc<Database>,
    sop: Arc<SopStore>,
    health: Arc<TicketStore>,
    measures: MeasureStore,
    reports: Reports,
}

fn office() -> Office {
    let dir = tempfile::tempdir().expect("tmp");
    let db = Arc::new(Database::create(dir.path().join("tickets.redb")).expect("db"));
    let sop = Arc::new(
        SopStore::new(
            db.clone(),
            DEFAULT_SOP,
            Path::new("sop.toml"),
            Calendar::default(),
        )
        .expect("sop"),
    );
    sop.init().expect("init");
    let health = Arc::new(TicketStore::new(db.clone()).expect("health"));
    let measures = MeasureStore::new(db.clone()).expect("measures");
    let reports = Reports::new(db.clone(), sop.clone(), health.clone())
        .expect("reports")
        .with_people(crate::sop::people::tests::office);
    Office {
        _dir: dir,
        db,
        sop,
        health,
        measures,
        reports,
    }
}

fn act(o: &Office, role: &str, action: Action, at: &str) {
    let (_, out) = o.sop.act(T, action, &user_for(role), wib(at)).expect("act");
    out.unwrap_or_else(|r| panic!("{role}: {r}"));
}

fn dispose(note: Option<&str>) -> Action {
    Action::Dispose {
        to: None,
        note: note.map(str::to_string),
        measurements: Measurements::default(),
    }
}

fn measurement(o: &Office, phase: Phase, at: DateTime<Utc>, loss: f64, rtts: Vec<u64>, oper: &str) {
    let mut m = o
        .measures
        .create(Measurement {
            id: String::new(),
            ticket: Some(T.into()),
            phase: Some(phase),
            opd: "dinkes".into(),
            devices: vec!["dinkes-rtr".into()],
            links: vec!["uplink".into()],
            icmp_count: 100,
            window_ms: 10_000,
            requested_by: "teknisi".into(),
            requested_at: at,
            completed_at: None,
            agent: None,
            state: MeasureState::Running { sent_at: at },
            device_figures: vec![],
            link_figures: vec![],
        })
        .expect("create");
    let mut sorted = rtts.clone();
    sorted.sort_unstable();
    let pick = |q: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * q) as usize)
            .copied()
    };
    m.device_figures = vec![DeviceFigures {
        device: "dinkes-rtr".into(),
        sent: 100,
        received: 100 - loss as u32,
        loss_pct: loss,
        rtt_min_us: sorted.first().copied(),
        rtt_avg_us: (!sorted.is_empty()).then(|| sorted.iter().sum::<u64>() / sorted.len() as u64),
        rtt_median_us: pick(0.5),
        rtt_p95_us: pick(0.95),
        rtt_max_us: sorted.last().copied(),
        jitter_us: Some(40),
        rtts_us: rtts,
        error: None,
        ..DeviceFigures::default()
    }];
    m.link_figures = vec![LinkFigures {
        name: "uplink".into(),
        device: "dinkes-rtr".into(),
        interface: "eth1".into(),
        oper_status: oper.into(),
        admin_status: "up".into(),
        speed_mbps: Some(1000.0),
        in_bps: Some(1.0e6),
        out_bps: Some(2.0e6),
        util_in_pct: Some(0.1),
        util_out_pct: Some(0.2),
        errors_per_s: Some(0.0),
        discards_per_s: Some(0.0),
        error: None,
    }];
    m.completed_at = Some(at + Duration::seconds(12));
    m.state = MeasureState::Done;
    m.agent = Some("dinkes-agent".into());
    o.measures.update(&m).expect("update");
}

/// A detected ticket at the Kepala Dinas's review, measured before (50 %
/// loss, link down) and after (no loss, link up).
fn at_review(o: &Office, status_text: &str) {
    let info = TicketInfo {
        number: String::new(),
        opd: "dinkes".into(),
        opd_name: Some("Dinas Kesehatan".into()),
        origin: Origin::Detected,
        problem: "Packet loss 50 % on dinkes-rtr (threshold 20 %)".into(),
        reason: None,
        device: Some("dinkes-rtr".into()),
        link: None,
        opened_at: wib("2026-11-23 08:00"),
    };
    o.sop
        .open(info, "PJ", false, &Actor::system(), wib("2026-11-23 08:00"))
        .expect("open");
    let reading = Reading {
        at: wib("2026-11-23 07:59").timestamp_micros(),
        findings: vec![Finding {
            problem: Problem::Loss,
            level: Level::Degraded,
            value: 50.0,
            threshold: Some(20.0),
            detail: String::new(),
            cause: None,
        }],
        immediate: false,
        sample: serde_json::json!({}).into(),
        link_up: None,
        contradicts_trap: false,
    };
    o.health
        .create(
            &TicketHealth {
                number: T.into(),
                incident: Some("device:dinkes-rtr:loss".into()),
                problem_id: "Packet loss 50 % pada dinkes-rtr (ambang 20 %)".into(),
                evidence: vec![reading],
                notes: vec![TicketNote {
                    at: wib("2026-11-23 08:00"),
                    kind: "opened".into(),
                    text: "dibuka otomatis: Packet loss 50 % pada dinkes-rtr".into(),
                    note: None,
                }],
                ..TicketHealth::default()
            },
            None,
        )
        .expect("health");
    // Step 1 was completed by the system when the ticket opened.
    act(
        o,
        "kepala_dinas",
        dispose(Some("segera")),
        "2026-11-23 08:20",
    );
    act(o, "kabid_aptika", dispose(None), "2026-11-23 08:30");
    act(o, "pranata_komputer", dispose(None), "2026-11-23 08:40");
    act(o, "helpdesk", dispose(None), "2026-11-23 08:50");
    let slow: Vec<u64> = (0..50).map(|i| 900 + i * 20).collect();
    measurement(
        o,
        Phase::Before,
        wib("2026-11-23 09:00"),
        50.0,
        slow,
        "down",
    );
    act(
        o,
        "tim_teknis",
        Action::UpdateStatus {
            status: status_text.into(),
        },
        "2026-11-23 09:05",
    );
    let fast: Vec<u64> = (0..100).map(|i| 300 + i).collect();
    measurement(o, Phase::After, wib("2026-11-23 09:30"), 0.0, fast, "up");
    act(
        o,
        "pemohon",
        Action::Acknowledge {
            by: "Andi Wijaya, Kasubag Umum".into(),
        },
        "2026-11-23 09:40",
    );
    act(
        o,
        "tim_teknis",
        Action::Dispose {
            to: None,
            note: Some("patch cord uplink diganti".into()),
            measurements: Measurements {
                before: true,
                after: true,
                waived: None,
            },
        },
        "2026-11-23 09:45",
    );
    act(o, "helpdesk", dispose(None), "2026-11-23 09:50");
    act(o, "pranata_komputer", dispose(None), "2026-11-23 10:00");
    act(o, "kabid_aptika", dispose(None), "2026-11-23 10:10");
}

fn html(o: &Office, lang: Lang) -> String {
    let d = o.reports.data(T, lang).expect("data");
    String::from_utf8(render(&d, Format::Html).expect("html")).expect("utf8")
}

#[test]
fn the_draft_shows_the_figures_the_verdicts_and_is_marked_draf() {
    let o = office();
    at_review(&o, "menuju lokasi");
    let d = o.reports.data(T, Lang::Id).expect("data");
    assert!(!d.is_final());
    let dev = &d.comparison.devices[0];
    let loss = &dev.rows[0];
    assert_eq!(
        (
            loss.before.as_str(),
            loss.after.as_str(),
            loss.change.as_str()
        ),
        ("50,0 %", "0,0 %", "-50,0 poin")
    );
    assert_eq!(loss.verdict, verdict::Verdict::Better);
    let link = &d.comparison.links[0];
    assert_eq!(link.rows[0].change, "down → up");
    assert_eq!(link.rows[0].verdict, verdict::Verdict::Better);
    assert_eq!(d.comparison.verdict, verdict::Verdict::Better);

    let h = html(&o, Lang::Id);
    for want in [
        "<!DOCTYPE html>",
        "<html lang=\"id\">",
        "@page{size:A4",
        "DRAF",
        "Dinas Komunikasi dan Informatika",
        "Bidang Aplikasi dan Informatika",
        T,
        "Dinas Kesehatan (dinkes)",
        "deteksi otomatis — aturan: kehilangan paket (loss), ambang 20,0 %",
        "Packet loss 50 % pada dinkes-rtr (ambang 20 %)",
        "50,0 %",
        "0,0 %",
        "membaik",
        "RTT median",
        "Jitter",
        "Status operasional",
        "1000 Mbit/s",
        "<svg viewBox=",
        "M-000001",
        "M-000002",
        "menuju lokasi",
        "patch cord uplink diganti",
        "Andi Wijaya",
        "Kasubag Umum",
        "<td>8b</td>",
        "Tepat waktu",
        "belum diperiksa",
    ] {
        assert!(h.contains(want), "the draft lacks {want:?}");
    }
    assert!(
        !h.contains("http://") && !h.contains("https://") && !h.contains(" src="),
        "no external resources"
    );
}

#[test]
fn ticket_text_is_escaped() {
    let o = office();
    at_review(&o, "<script>alert(\"x\")</script> & <marquee>");
    let h = html(&o, Lang::Id);
    assert!(!h.contains("<script>"), "raw user text in the HTML");
    assert!(!h.contains("<marquee>"), "raw user text in the HTML");
    assert!(h.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;marquee&gt;"));
}

#[test]
fn english_has_english_headings_and_verdicts() {
    let o = office();
    at_review(&o, "on the way");
    let h = html(&o, Lang::En);
    for want in [
        "<html lang=\"en\">",
        "WORK REPORT",
        "DRAFT",
        "Measurements before and after the work",
        "The OPD's acknowledgement",
        "improved",
        "50.0 %",
        "automatic detection",
    ] {
        assert!(h.contains(want), "the English report lacks {want:?}");
    }
    assert!(!h.contains("membaik") && !h.contains("Pengukuran sebelum"));
}

#[test]
fn the_review_freezes_both_formats_and_languages_and_the_store_gives_them_back() {
    let o = office();
    at_review(&o, "menuju lokasi");
    // Before the review nothing is frozen.
    assert_eq!(
        o.reports
            .freeze(T, wib("2026-11-23 10:15"))
            .expect("freeze"),
        None
    );
    act(
        &o,
        "kepala_dinas",
        dispose(Some("Pekerjaan diterima, pertahankan.")),
        "2026-11-23 10:20",
    );
    let frozen = o
        .reports
        .freeze(T, wib("2026-11-23 10:21"))
        .expect("freeze")
        .expect("frozen now");
    let keys: Vec<String> = frozen
        .iter()
        .map(|d| store::key(&d.format, d.lang))
        .collect();
    assert_eq!(keys, ["html/id", "pdf/id", "html/en", "pdf/en"]);
    // Once per review.
    assert_eq!(
        o.reports.freeze(T, wib("2026-11-23 10:22")).expect("again"),
        None
    );
    let trail = o.sop.trail(T).expect("trail");
    assert!(matches!(
        trail.last().map(|r| &r.event.kind),
        Some(EventKind::ReportFrozen { .. })
    ));
    assert!(
        o.sop
            .verify()
            .expect("verify")
            .iter()
            .all(|(_, r)| r.is_ok())
    );

    let a = o
        .reports
        .document(T, Format::Pdf, Lang::Id, wib("2026-11-24 08:00"))
        .expect("pdf");
    assert!(a.is_final && a.bytes.starts_with(b"%PDF-"));
    assert_eq!(store::sha256(&a.bytes), frozen[1].sha256);
    let h = o
        .reports
        .document(T, Format::Html, Lang::Id, wib("2026-11-24 08:00"))
        .expect("html");
    let text = String::from_utf8(h.bytes).expect("utf8");
    assert!(!text.contains("DRAF"), "the final report is not a draft");
    for want in [
        "Final, diperiksa Kepala Dinas pada 2026-11-23 10:20",
        "Pekerjaan diterima, pertahankan.",
        "Dr. Hendra Wijaya, M.Si. (Kepala Dinas)",
    ] {
        assert!(text.contains(want), "the final report lacks {want:?}");
    }
    let en = o
        .reports
        .document(T, Format::Html, Lang::En, wib("2026-11-24 08:00"))
        .expect("en");
    let en = String::from_utf8(en.bytes).expect("utf8");
    assert!(en.contains("WORK REPORT") && !en.contains("DRAFT"));
}

/// Two collectors (two `Reports` over one database) freezing the same
/// review at the same moment: one freezes, the other finds it frozen; both
/// give the same bytes.
#[test]
fn two_freezes_of_one_review_at_once_freeze_it_once() {
    let o = office();
    at_review(&o, "menuju lokasi");
    act(&o, "kepala_dinas", dispose(None), "2026-11-23 10:20");
    let other = Reports::new(o.db.clone(), o.sop.clone(), o.health.clone())
        .expect("reports")
        .with_people(crate::sop::people::tests::office);
    let both = std::sync::Barrier::new(2);
    let freeze = |r: &'static str, reports: &Reports, now: &str| {
        both.wait();
        reports.freeze(T, wib(now)).expect(r)
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| freeze("first", &o.reports, "2026-11-23 10:21"));
        let b = s.spawn(|| freeze("second", &other, "2026-11-23 10:22"));
        (a.join().expect("first"), b.join().expect("second"))
    });
    assert!(
        a.is_some() != b.is_some(),
        "frozen by both or neither: {a:?} {b:?}"
    );
    let frozen = o
        .sop
        .trail(T)
        .expect("trail")
        .iter()
        .filter(|r| matches!(r.event.kind, EventKind::ReportFrozen { .. }))
        .count();
    assert_eq!(frozen, 1, "report_frozen records in the trail");
    for (format, lang) in [(Format::Pdf, Lang::Id), (Format::Html, Lang::En)] {
        let at = wib("2026-11-24 08:00");
        let x = o.reports.document(T, format, lang, at).expect("document");
        let y = other.document(T, format, lang, at).expect("document");
        assert!(x.is_final && x.bytes == y.bytes, "{format:?} {lang:?}");
    }
}

#[test]
fn a_final_report_renders_again_byte_for_byte_whatever_came_after() {
    let o = office();
    at_review(&o, "menuju lokasi");
    // Asked for before the review, still running at it.
    let mut late = o
        .measures
        .create(Measurement {
            id: String::new(),
            ticket: Some(T.into()),
            phase: Some(Phase::After),
            opd: "dinkes".into(),
            devices: vec!["dinkes-rtr".into()],
            links: vec![],
            icmp_count: 100,
            window_ms: 10_000,
            requested_by: "teknisi".into(),
            requested_at: wib("2026-11-23 10:15"),
            completed_at: None,
            agent: None,
            state: MeasureState::Running {
                sent_at: wib("2026-11-23 10:15"),
            },
            device_figures: vec![],
            link_figures: vec![],
        })
        .expect("create");
    act(
        &o,
        "kepala_dinas",
        dispose(Some("Diterima")),
        "2026-11-23 10:20",
    );
    let first: Vec<Vec<u8>> = [Format::Html, Format::Pdf]
        .iter()
        .map(|f| render(&o.reports.data(T, Lang::Id).expect("data"), *f).expect("render"))
        .collect();
    // After the review: the running one fails, another one is taken, a health note.
    late.state = MeasureState::Failed {
        error: "no answer from the agent".into(),
    };
    late.completed_at = Some(wib("2026-11-23 10:40"));
    o.measures.update(&late).expect("update");
    measurement(
        &o,
        Phase::After,
        wib("2026-11-24 09:00"),
        30.0,
        vec![5000; 70],
        "up",
    );
    o.health
        .update(T, |h| {
            h.notes.push(TicketNote {
                at: wib("2026-11-24 09:10"),
                kind: "occurrence".into(),
                text: "terjadi lagi".into(),
                note: None,
            })
        })
        .expect("note");
    for (f, want) in [Format::Html, Format::Pdf].iter().zip(&first) {
        let again = render(&o.reports.data(T, Lang::Id).expect("data"), *f).expect("render");
        assert!(again == *want, "{f:?} differs from the first rendering");
    }
}

#[test]
fn changed_bytes_in_the_store_are_refused_and_verify_names_them() {
    let o = office();
    at_review(&o, "menuju lokasi");
    act(&o, "kepala_dinas", dispose(None), "2026-11-23 10:20");
    o.reports
        .freeze(T, wib("2026-11-23 10:21"))
        .expect("freeze");
    let checks = store::verify(&o.db.clone().into(), &o.sop).expect("verify");
    assert_eq!(checks.len(), 4);
    assert!(checks.iter().all(|c| c.problem.is_none()), "{checks:?}");
    // Behind the collector's back: one byte of the stored PDF.
    let mut bytes = store::get(&o.db.clone().into(), T, "pdf", Lang::Id)
        .expect("get")
        .expect("stored");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    let w = crate::kv::Db::from(o.db.clone()).write().expect("w");
    store::put(&w, T, &[("pdf/id".into(), bytes)]).expect("put");
    w.commit().expect("commit");

    let err = o
        .reports
        .document(T, Format::Pdf, Lang::Id, wib("2026-11-24 08:00"))
        .expect_err("tampered");
    assert!(err.to_string().contains("does not match the hash"), "{err}");
    let bad: Vec<_> = store::verify(&o.db.clone().into(), &o.sop)
        .expect("verify")
        .into_iter()
        .filter(|c| c.problem.is_some())
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(
        (bad[0].ticket.as_str(), bad[0].document.as_str()),
        (T, "pdf/id")
    );
    assert!(
        bad[0]
            .problem
            .as_deref()
            .is_some_and(|p| p.starts_with("altered"))
    );
}

#[test]
fn a_waived_measurement_shows_the_reason() {
    let o = office();
    let info = TicketInfo {
        number: String::new(),
        opd: "dinkes".into(),
        opd_name: None,
        origin: Origin::Letter {
            number: "005/123/DINKES/XI/2026".into(),
            date: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).expect("date"),
            subject: "Internet ruang rapat putus".into(),
        },
        problem: "Internet ruang rapat putus".into(),
        reason: None,
        device: None,
        link: None,
        opened_at: wib("2026-11-23 08:00"),
    };
    o.sop
        .open(
            info,
            "PJ",
            false,
            &user_for("helpdesk"),
            wib("2026-11-23 08:00"),
        )
        .expect("open");
    for (role, at) in [
        ("pemohon", "2026-11-23 08:10"),
        ("kepala_dinas", "2026-11-23 08:20"),
        ("kabid_aptika", "2026-11-23 08:30"),
        ("pranata_komputer", "2026-11-23 08:40"),
        ("helpdesk", "2026-11-23 08:50"),
    ] {
        act(&o, role, dispose(None), at);
    }
    act(
        &o,
        "helpdesk",
        Action::Acknowledge { by: "Budi".into() },
        "2026-11-23 09:00",
    );
    act(
        &o,
        "tim_teknis",
        Action::Dispose {
            to: None,
            note: None,
            measurements: Measurements {
                before: false,
                after: false,
                waived: Some("perangkat mati total".into()),
            },
        },
        "2026-11-23 09:10",
    );
    let h = html(&o, Lang::Id);
    for want in [
        "Tanpa pengukuran:</b> perangkat mati total",
        "surat 005/123/DINKES/XI/2026 tanggal 2026-11-20: Internet ruang rapat putus",
        "Belum ada pengukuran",
        "atas nama OPD",
        "DRAF",
    ] {
        assert!(h.contains(want), "lacks {want:?}");
    }
    let pdf = render(&o.reports.data(T, Lang::Id).expect("data"), Format::Pdf).expect("pdf");
    assert!(pdf.starts_with(b"%PDF-"));
}
