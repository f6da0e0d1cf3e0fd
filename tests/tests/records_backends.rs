//! The tickets' records (SOP tickets and their hash-chained trails, health
//! records, open incidents, events, measurements) on both backends: the
//! embedded `tickets.redb` and PostgreSQL's `kv` table on a real cluster
//! the test starts itself. Each behaviour is written once against
//! [`Db`] and run on both; "another collector" is a second handle on the
//! same database (on redb the same file, which one process holds).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use siaga_collector::health::HealthRules;
use siaga_collector::inventory::Inventory;
use siaga_collector::kv::Db;
use siaga_collector::kv::postgres::PgKv;
use siaga_collector::sop::Calendar;
use siaga_collector::sop::file::DEFAULT_SOP;
use siaga_collector::sop::store::SopStore;
use siaga_collector::ticket::{HealthCore, TicketStore};
use siaga_proto::v1;
use siaga_tests::harness::text;
use siaga_tests::postgres::Cluster;

const SEC: i64 = 1_000_000;
/// 2026-11-24 00:00 WIB.
const T0: i64 = 1_795_489_200 * SEC;

const INV: &str = r#"
[[opd]]
id = "dinkes"
name = "Dinas Kesehatan"
[[device]]
id = "dinkes-rtr"
opd = "dinkes"
kind = "router"
address = "198.18.1.1"
[[device]]
id = "dinkes-sw1"
opd = "dinkes"
kind = "switch"
address = "198.18.1.2"
parent = "dinkes-rtr"
"#;

/// A database of records and a way to open it again as another collector would.
struct Backend {
    name: &'static str,
    db: Db,
    again: Box<dyn Fn() -> Result<Db>>,
    _keep: Box<dyn std::any::Any>,
}

fn redb() -> Result<Backend> {
    let dir = tempfile::tempdir()?;
    let db = Db::Redb(Arc::new(redb::Database::create(
        dir.path().join("tickets.redb"),
    )?));
    let same = db.clone();
    Ok(Backend {
        name: "redb",
        db,
        again: Box::new(move || Ok(same.clone())),
        _keep: Box::new(dir),
    })
}

fn postgres() -> Result<Backend> {
    let pg = Cluster::start()?;
    let url = pg.url();
    let db = Db::Pg(Arc::new(PgKv::open(&url)?));
    Ok(Backend {
        name: "postgres",
        db,
        again: Box::new(move || Ok(Db::Pg(Arc::new(PgKv::open(&url)?)))),
        _keep: Box::new(pg),
    })
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod redb_backend {
            $(#[test]
            fn $name() -> anyhow::Result<()> {
                super::$name(super::redb()?)
            })*
        }
        mod postgres_backend {
            $(#[test]
            fn $name() -> anyhow::Result<()> {
                super::$name(super::postgres()?)
            })*
        }
    };
}

on_both!(
    a_fault_opens_one_ticket_even_when_a_second_collector_sees_it_too,
    a_trail_changed_behind_the_store_fails_verification,
    numbers_and_ids_stay_sequential_across_collectors,
    events_read_back_in_order_in_pages,
    a_report_frozen_by_two_collectors_at_once_is_frozen_once,
);

/// What one collector holds over a database of records.
struct Part {
    sop: Arc<SopStore>,
    health: Arc<TicketStore>,
}

fn part(db: &Db) -> Result<Part> {
    let sop = Arc::new(SopStore::new(
        db.clone(),
        DEFAULT_SOP,
        Path::new("sop.toml"),
        Calendar::default(),
    )?);
    sop.init()?;
    let health = Arc::new(TicketStore::new(db.clone())?);
    Ok(Part { sop, health })
}

fn core(p: &Part) -> Result<HealthCore> {
    let inv = Inventory::parse(Path::new("inventory.toml"), INV)?;
    Ok(HealthCore::new(
        HealthRules::default(),
        &inv,
        p.health.clone(),
        p.sop.clone(),
        None,
    )?)
}

fn icmp(device: &str, t: i64, loss: f64) -> v1::Sample {
    let received = ((100.0 - loss) / 10.0).round() as u32;
    v1::Sample {
        seq: (t / SEC) as u64,
        ts_us: t,
        device: device.into(),
        kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
            sent: 10,
            received,
            loss_pct: loss,
            rtt_avg_us: (received > 0).then_some(1_000),
            ..Default::default()
        })),
    }
}

/// Cycle `n` (10 s apart) of both devices at `loss` % for the router.
fn cycle(c: &mut HealthCore, n: i64, router_loss: f64) {
    let t = T0 + n * 10 * SEC;
    let samples = [
        icmp("dinkes-rtr", t, router_loss),
        icmp("dinkes-sw1", t, 0.0),
    ];
    c.samples("dinkes", &samples, t);
    c.tick(t + SEC);
}

/// The router goes down in front of two collectors' engines: the first one
/// opens the ticket; the second, whose engine saw the same fault without
/// knowing of that ticket (it started before it), opens none — the open
/// incident is looked up in the transaction that would open it. Both read
/// the one ticket, its trail verifies, and it survives a restart.
fn a_fault_opens_one_ticket_even_when_a_second_collector_sees_it_too(b: Backend) -> Result<()> {
    let a = part(&b.db)?;
    let other = part(&(b.again)()?)?;
    let mut ca = core(&a)?;
    let mut cb = core(&other)?;
    for n in 0..3 {
        cycle(&mut ca, n, 0.0);
        cycle(&mut cb, n, 0.0);
    }
    for n in 3..6 {
        cycle(&mut ca, n, 100.0);
    }
    let list = a.sop.list()?;
    ensure!(list.len() == 1, "{}: {list:#?}", b.name);
    let number = list[0].info.number.clone();
    ensure!(number.ends_with("-0001"), "{number}");
    for n in 3..6 {
        cycle(&mut cb, n, 100.0);
    }
    let seen = other.sop.list()?;
    ensure!(
        seen.len() == 1 && seen[0].info.number == number,
        "{}: the second collector opened another ticket: {seen:#?}",
        b.name
    );
    let inc = other.health.incidents()?;
    ensure!(
        inc.len() == 1 && inc[0].ticket == number,
        "{}: {inc:#?}",
        b.name
    );
    // The trail (opened, disposed by the system at step 1) verifies on
    // the other collector, and a third one started now adopts the
    // incident rather than opening it again.
    let verified = other.sop.verify()?;
    ensure!(
        verified.len() == 1 && verified[0].1.is_ok(),
        "{}: {verified:?}",
        b.name
    );
    let third = part(&(b.again)()?)?;
    let mut cc = core(&third)?;
    for n in 6..9 {
        cycle(&mut cc, n, 100.0);
    }
    ensure!(third.sop.list()?.len() == 1, "{}", b.name);
    Ok(())
}

/// A trail record changed behind the store's back (a row rewritten in
/// the database) is found by `verify` at its index.
fn a_trail_changed_behind_the_store_fails_verification(b: Backend) -> Result<()> {
    let a = part(&b.db)?;
    let mut c = core(&a)?;
    for n in 0..3 {
        cycle(&mut c, n, 0.0);
    }
    for n in 3..6 {
        cycle(&mut c, n, 100.0);
    }
    let number = a.sop.list()?[0].info.number.clone();
    let trail = a.sop.trail(&number)?;
    ensure!(trail.len() >= 2, "{trail:?}");
    let audit: siaga_collector::kv::Table<(String, u64), Vec<u8>> =
        siaga_collector::kv::Table::new("sop_audit");
    let w = (b.again)()?.write()?;
    let raw = w
        .get(&audit, (number.as_str(), 1u64))?
        .ok_or_else(|| anyhow::anyhow!("no record 1"))?;
    // Who disposed it: the system, as someone else.
    let text = String::from_utf8(raw)?.replacen("\"user\":\"siaga\"", "\"user\":\"sekdis\"", 1);
    ensure!(text.contains("sekdis"), "{text}");
    w.insert(&audit, (number.as_str(), 1u64), text.as_bytes())?;
    w.commit()?;
    let results = a.sop.verify()?;
    let err = results[0]
        .1
        .clone()
        .err()
        .ok_or_else(|| anyhow::anyhow!("{}: the change went unnoticed", b.name))?;
    ensure!(err.index == 1, "{}: {err}", b.name);
    Ok(())
}

/// Tickets opened at once by two collectors get distinct numbers of one
/// sequence, without gaps; measurement ids likewise.
fn numbers_and_ids_stay_sequential_across_collectors(b: Backend) -> Result<()> {
    use siaga_collector::sop::workflow::{Actor, Origin, TicketInfo};
    let parts = [part(&b.db)?, part(&(b.again)()?)?];
    let at = chrono::DateTime::from_timestamp_micros(T0).unwrap_or_default();
    let numbers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|p| {
                s.spawn(move || -> Result<Vec<String>> {
                    let mut out = Vec::new();
                    for _ in 0..15 {
                        let info = TicketInfo {
                            number: String::new(),
                            opd: "dinkes".into(),
                            opd_name: None,
                            origin: Origin::Detected,
                            problem: "uji".into(),
                            reason: None,
                            device: None,
                            link: None,
                            opened_at: at,
                        };
                        let t = p.sop.open(info, "PJ", false, &Actor::system(), at)?;
                        out.push(t.info.number);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect::<Result<Vec<_>>>()
            .map(|v| v.concat())
    })?;
    let mut sorted = numbers.clone();
    sorted.sort();
    let want: Vec<String> = (1..=30).map(|n| format!("PJ-2026-{n:04}")).collect();
    ensure!(sorted == want, "{}: {sorted:?}", b.name);
    for (p, want) in parts.iter().zip(["M-000001", "M-000002"]) {
        let store = siaga_collector::measure::MeasureStore::new(p.sop_db())?;
        let m = store.create(measurement())?;
        ensure!(m.id == want, "{}: {} for {want}", b.name, m.id);
    }
    Ok(())
}

/// A ticket walked through the chain to its review, disposed on one
/// collector; both collectors freeze its report at the same moment: one
/// stores it, the other stores nothing, and both give the same bytes.
fn a_report_frozen_by_two_collectors_at_once_is_frozen_once(b: Backend) -> Result<()> {
    use siaga_collector::report::{Format, Reports};
    use siaga_collector::sop::Lang;
    use siaga_collector::sop::workflow::{Action, Actor, Measurements, Origin, TicketInfo};
    let parts = [part(&b.db)?, part(&(b.again)()?)?];
    let at = chrono::DateTime::from_timestamp_micros(T0).unwrap_or_default();
    let info = TicketInfo {
        number: String::new(),
        opd: "dinkes".into(),
        opd_name: Some("Dinas Kesehatan".into()),
        origin: Origin::Detected,
        problem: "Packet loss 50 % on dinkes-rtr".into(),
        reason: None,
        device: Some("dinkes-rtr".into()),
        link: None,
        opened_at: at,
    };
    let t = parts[0].sop.open(info, "PJ", false, &Actor::system(), at)?;
    let id = t.info.number;
    let dispose = |waived: Option<&str>| Action::Dispose {
        to: None,
        note: None,
        measurements: Measurements {
            before: false,
            after: false,
            waived: waived.map(str::to_string),
        },
    };
    let steps = [
        ("kepala_dinas", dispose(None)),
        ("kabid_aptika", dispose(None)),
        ("pranata_komputer", dispose(None)),
        ("helpdesk", dispose(None)),
        (
            "pemohon",
            Action::Acknowledge {
                by: "Andi Wijaya, Kasubag Umum".into(),
            },
        ),
        ("tim_teknis", dispose(Some("perangkat mati total"))),
        ("helpdesk", dispose(None)),
        ("pranata_komputer", dispose(None)),
        ("kabid_aptika", dispose(None)),
        // The review: its report is frozen from now on.
        ("kepala_dinas", dispose(None)),
    ];
    for (i, (role, action)) in steps.into_iter().enumerate() {
        let when = at + chrono::Duration::minutes(10 * (i as i64 + 1));
        let (_, outcome) = parts[i % 2]
            .sop
            .act(&id, action, &Actor::new(role, &[role]), when)?;
        outcome.map_err(|r| anyhow::anyhow!("{}: {role}: {r}", b.name))?;
    }
    let reports = parts
        .iter()
        .map(|p| Reports::new(p.sop_db(), p.sop.clone(), p.health.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let both = std::sync::Barrier::new(2);
    let frozen = std::thread::scope(|s| {
        let handles: Vec<_> = reports
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let both = &both;
                let id = id.as_str();
                s.spawn(move || {
                    both.wait();
                    r.freeze(id, at + chrono::Duration::minutes(200 + i as i64))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    ensure!(
        frozen.iter().filter(|f| f.is_some()).count() == 1,
        "{}: frozen by {} collectors",
        b.name,
        frozen.iter().filter(|f| f.is_some()).count()
    );
    let records = parts[1]
        .sop
        .events(&id)?
        .iter()
        .filter(|e| serde_json::to_string(&e.kind).is_ok_and(|k| k.contains("report_frozen")))
        .count();
    ensure!(records == 1, "{}: {records} report_frozen records", b.name);
    let later = at + chrono::Duration::days(1);
    let (x, y) = (
        reports[0].document(&id, Format::Pdf, Lang::Id, later)?,
        reports[1].document(&id, Format::Pdf, Lang::Id, later)?,
    );
    ensure!(
        x.is_final && x.bytes.starts_with(b"%PDF-") && x.bytes == y.bytes,
        "{}: the two collectors give other bytes",
        b.name
    );
    Ok(())
}

impl Part {
    fn sop_db(&self) -> Db {
        self.health.database().clone()
    }
}

fn measurement() -> siaga_collector::measure::model::Measurement {
    use siaga_collector::measure::model::{MeasureState, Measurement};
    Measurement {
        id: String::new(),
        ticket: None,
        phase: None,
        opd: "dinkes".into(),
        devices: vec!["dinkes-sw1".into()],
        links: vec![],
        icmp_count: 10,
        window_ms: 1_000,
        requested_by: "teknisi".into(),
        requested_at: chrono::Utc::now(),
        completed_at: None,
        agent: None,
        state: MeasureState::Queued {
            expires_at: chrono::Utc::now(),
        },
        device_figures: vec![],
        link_figures: vec![],
    }
}

/// The health log reads back oldest first, in pages that neither skip
/// nor repeat an event, and the newest `n` are the last `n`.
fn events_read_back_in_order_in_pages(b: Backend) -> Result<()> {
    use siaga_collector::ticket::store::{HealthEvent, HealthEventKind};
    let a = part(&b.db)?;
    let other = part(&(b.again)()?)?;
    let event = |i: i64| HealthEvent {
        ts_us: T0 + (i % 7) * SEC - 3 * SEC,
        kind: HealthEventKind::State,
        subject: format!("device d{i}"),
        device: Some(format!("d{i}")),
        link: None,
        opd: "dinkes".into(),
        from: None,
        to: None,
        flapping: false,
        reason: format!("event {i}"),
        ticket: None,
    };
    for i in 0..300 {
        let store = if i % 2 == 0 { &a.health } else { &other.health };
        store.append_events(&[event(i)])?;
    }
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = other
            .health
            .events_range(after, i64::MIN, i64::MAX, 64, |_| true)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        all.extend(page);
    }
    ensure!(all.len() == 300, "{}: {}", b.name, all.len());
    ensure!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "{}: not in order",
        b.name
    );
    let newest = a.health.events_since(i64::MIN, 10)?;
    let tail: Vec<_> = all[290..].iter().map(|(_, e)| e.clone()).collect();
    ensure!(newest == tail, "{}: {newest:?}", b.name);
    Ok(())
}

// ---- The collector on PostgreSQL -----------------------------------------

/// The tickets as `siaga tickets --json` lists them, without what depends
/// on the moment of asking.
fn tickets(who: &siaga_tests::harness::Siaga) -> Result<Vec<serde_json::Value>> {
    let v = who.json(&["tickets", "--json"])?;
    Ok(v.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut t| {
            if let Some(o) = t.as_object_mut() {
                o.remove("overdue");
            }
            t
        })
        .collect())
}

fn open_letter(who: &siaga_tests::harness::Siaga, n: u32) -> Result<String> {
    let o = who.run(&[
        "ticket",
        "new",
        "--opd",
        "dinkes",
        "--letter-number",
        &format!("005/{n}/DINKES/2026"),
        "--letter-date",
        &siaga_tests::office::letter_date(),
        "--subject",
        &format!("Gangguan {n}"),
    ])?;
    ensure!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    out.trim()
        .strip_prefix("opened ")
        .and_then(|r| r.split(':').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{out}"))
}

/// A collector (not serving yet) of the OPD dinkes with one device.
fn dinkes_collector() -> Result<siaga_tests::harness::Collector> {
    use siaga_tests::harness::{Collector, Inventory};
    let c = Collector::init()?;
    c.write_inventory(&Inventory::new("10s").opd("dinkes").device(
        "dinkes-sw1",
        "dinkes",
        "127.0.0.1",
    ))?;
    Ok(c)
}

/// `[store] url`: tickets, their trails and steps live in PostgreSQL. The
/// collector writes no `tickets.redb`; `verify` checks the trails there;
/// after a restart, and from a second collector made as a copy of the
/// first's directory, `siaga tickets` gives the same answer, and a ticket
/// opened on the second takes the next number of the one sequence.
#[test]
fn tickets_on_postgres_survive_a_restart_and_read_the_same_on_another_collector() -> Result<()> {
    use siaga_tests::harness::set_toml;
    let pg = Cluster::start()?;
    let mut c = dinkes_collector()?;
    set_toml(&c.config, "store.url", pg.url().into())?;
    let root = c.enroll_user("root", "admin")?;
    let hd = c.enroll_user("hd", "helpdesk")?;
    let opd = c.enroll_user_in("opd", "pemohon", "dinkes")?;
    c.serve()?;
    let first = open_letter(&hd, 1)?;
    let second = open_letter(&hd, 2)?;
    let o = opd.run(&["ticket", "dispose", &first, "--note", "segera"])?;
    ensure!(o.status.success(), "{}", text(&o));
    let before = tickets(&root)?;
    ensure!(before.len() == 2, "{before:?}");
    let show = |who: &siaga_tests::harness::Siaga| -> Result<serde_json::Value> {
        let mut v = who.json(&["ticket", "show", &first, "--json"])?;
        if let Some(t) = v.get_mut("ticket").and_then(|t| t.as_object_mut()) {
            t.remove("overdue");
        }
        Ok(v)
    };
    let shown = show(&root)?;
    ensure!(c.stop(), "the collector did not stop cleanly");
    let tickets_file = c.data_dir.join("tickets.redb");
    ensure!(
        !tickets_file.exists(),
        "{} written beside PostgreSQL",
        tickets_file.display()
    );
    let v = c.cmd(&["verify", "--config", &c.config.to_string_lossy()])?;
    ensure!(v.status.success(), "{}", text(&v));
    for n in [&first, &second] {
        ensure!(text(&v).contains(&format!("{n}: ok")), "{}", text(&v));
    }

    let mut other = c.copy_as_another()?;
    c.serve()?;
    other.serve()?;
    let root_b = root.on(&other)?;
    ensure!(tickets(&root)? == before, "after the restart");
    ensure!(tickets(&root_b)? == before, "on the other collector");
    ensure!(
        show(&root_b)? == shown,
        "ticket show on the other collector"
    );
    let third = open_letter(&hd.on(&other)?, 3)?;
    let next = |n: &str| n.rsplit('-').next().and_then(|s| s.parse::<u32>().ok());
    ensure!(
        next(&third) == next(&second).map(|n| n + 1),
        "{third} after {second}"
    );
    ensure!(
        tickets(&root)?.len() == 3,
        "the first collector does not see {third}"
    );
    Ok(())
}

/// A collector whose `tickets.redb` holds tickets is not pointed at
/// PostgreSQL by a config edit alone: `validate` and `serve` refuse, naming
/// the file and the `migrate` command, rather than start without them.
#[test]
fn a_tickets_file_with_tickets_is_not_left_behind_by_a_store_url() -> Result<()> {
    use siaga_tests::harness::set_toml;
    let pg = Cluster::start()?;
    let mut c = dinkes_collector()?;
    let hd = c.enroll_user("hd", "helpdesk")?;
    c.serve()?;
    open_letter(&hd, 1)?;
    ensure!(c.stop(), "the collector did not stop cleanly");
    set_toml(&c.config, "store.url", pg.url().into())?;
    let v = c.validate()?;
    let out = text(&v);
    ensure!(!v.status.success(), "validate passed: {out}");
    ensure!(
        out.contains("holds 1 ticket(s)") && out.contains("siaga-collector migrate"),
        "{out}"
    );
    let s = c.cmd(&["serve", "--config", &c.config.to_string_lossy()])?;
    ensure!(!s.status.success(), "serve started: {}", text(&s));
    ensure!(
        text(&s).contains("holds 1 ticket(s)") && text(&s).contains("siaga-collector migrate"),
        "{}",
        text(&s)
    );
    Ok(())
}
