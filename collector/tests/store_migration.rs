//! Stores written by older schemas (the fixtures in `tests/fixtures/store-v1`
//! and `store-v2`, see their READMEs) opened by this collector: migrated on
//! open, with every sample, agent, ticket, event and maintenance window the
//! old collector reported in `expect.json`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use siaga_collector::schema::{self, SAMPLES_FILE, TICKETS_FILE};
use siaga_collector::sop::store::SopStore;
use siaga_collector::sop::{Calendar, CalendarConfig};
use siaga_collector::store::{RedbStore, Store};
use siaga_collector::ticket::TicketStore;

fn fixture_of(schema: u64) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/store-v{schema}"))
}

/// A copy of a fixture's data directory (opening migrates it in place).
fn data_dir_of(schema: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["collector.redb", "tickets.redb"] {
        std::fs::copy(fixture_of(schema).join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn data_dir() -> tempfile::TempDir {
    data_dir_of(1)
}

fn expect_of(schema: u64) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_of(schema).join("expect.json")).unwrap())
        .unwrap()
}

fn expect() -> Value {
    expect_of(1)
}

fn file_version(path: &Path) -> Option<u64> {
    schema::version(&redb::Database::open(path).unwrap()).unwrap()
}

#[test]
fn the_fixture_is_schema_1() {
    let dir = data_dir();
    for f in ["collector.redb", "tickets.redb"] {
        assert_eq!(file_version(&dir.path().join(f)), Some(1), "{f}");
    }
}

#[test]
fn schema_1_samples_and_agents_are_all_there_after_the_migration() {
    let dir = data_dir();
    let expect = expect();
    {
        let store = RedbStore::open(dir.path()).unwrap();
        let history = expect["history"].as_object().unwrap();
        assert_eq!(history.len(), 3);
        for (device, rows) in history {
            let rows = rows.as_array().unwrap();
            assert!(!rows.is_empty(), "{device}");
            let got = store.history(device, 0, 100_000).unwrap();
            let got: Vec<Value> = got
                .iter()
                .map(|s| {
                    assert_eq!(s.received_us, None, "{device} seq {}", s.sample.seq);
                    let j = siaga_collector::admin::sample_json(s);
                    assert!(j["received_at"].is_null());
                    serde_json::json!({"agent": j["agent"], "seq": j["seq"], "ts": j["ts"], "kind": j["kind"]})
                })
                .collect();
            assert_eq!(&got, rows, "{device}");
        }
        let agents = store.agents().unwrap();
        let want = expect["agents"].as_array().unwrap();
        assert_eq!(agents.len(), want.len());
        assert_eq!(agents[0].id, want[0]["id"].as_str().unwrap());
        assert_eq!(agents[0].opd, want[0]["opd"].as_str().unwrap());
        assert_eq!(agents[0].hostname, want[0]["hostname"].as_str().unwrap());
    }
    assert_eq!(
        file_version(&dir.path().join("collector.redb")),
        Some(SAMPLES_FILE.version)
    );
    // Opening again changes nothing.
    let store = RedbStore::open(dir.path()).unwrap();
    let n: usize = ["dinkes-core", "dinkes-sw1", "dinkes-sw2"]
        .iter()
        .map(|d| store.history(d, 0, 100_000).unwrap().len())
        .sum();
    assert_eq!(n, 30);
}

/// `tickets.list`, `events.list` and `maintenance.list` answer as the old
/// collector did (but for `overdue`, which depends on today's date).
#[test]
fn schema_1_tickets_events_and_windows_are_all_there() {
    let dir = data_dir();
    let expect = expect();
    let db = Arc::new(schema::open_tickets(dir.path()).unwrap());
    let sop = SopStore::new(
        db.clone(),
        siaga_collector::sop::file::DEFAULT_SOP,
        Path::new("sop.toml"),
        Calendar::new(&CalendarConfig::default()).unwrap(),
    )
    .unwrap();
    let tickets = TicketStore::new(db.clone()).unwrap();
    let without_overdue = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.as_object_mut().unwrap().remove("overdue");
                t
            })
            .collect()
    };
    // The tickets as the Tickets service gives them, in the fields the
    // old collector listed.
    let time = |t: &Option<pbjson_types::Timestamp>| -> Value {
        t.as_ref().map_or(Value::Null, |t| {
            let t = siaga_collector::ticket::wire::time(t);
            Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        })
    };
    let text = |s: &str| -> Value {
        if s.is_empty() {
            Value::Null
        } else {
            Value::from(s)
        }
    };
    let mut listed = sop.list().unwrap();
    listed.sort_by(|a, b| a.info.number.cmp(&b.info.number));
    let got = Value::Array(
        listed
            .iter()
            .map(|t| {
                let t =
                    siaga_collector::ticket::api::ticket_of(&tickets, &sop, t, chrono::Utc::now())
                        .unwrap();
                serde_json::json!({
                    "affected": t.affected, "assignee": text(&t.assignee), "closed": t.closed,
                    "device": text(&t.device), "due_at": time(&t.due_at), "flapping": t.flapping,
                    "id": t.id, "incident": text(&t.incident), "link": text(&t.link),
                    "occurrences": t.occurrences, "opd": t.opd, "opened_at": time(&t.opened_at),
                    "origin": t.origin().to_string(), "overdue": t.overdue, "problem": t.problem,
                    "recovered_at": time(&t.recovered_at), "role": t.role, "step": t.step,
                })
            })
            .collect(),
    );
    assert_eq!(got.as_array().unwrap().len(), 2);
    assert_eq!(without_overdue(&got), without_overdue(&expect["tickets"]));
    assert_eq!(
        serde_json::to_value(tickets.events_since(0, 100_000).unwrap()).unwrap(),
        expect["events"],
        "events"
    );
    assert_eq!(
        serde_json::to_value(tickets.windows().unwrap()).unwrap(),
        expect["maintenance"],
        "windows"
    );
    // The trails still verify.
    let verified = sop.verify().unwrap();
    assert_eq!(verified.len(), 2);
    assert!(verified.iter().all(|(_, r)| r.is_ok()), "{verified:?}");
    assert_eq!(schema::version(&db).unwrap(), Some(TICKETS_FILE.version));
}

#[test]
fn the_v2_fixture_is_schema_2() {
    let dir = data_dir_of(2);
    assert_eq!(
        file_version(&dir.path().join("collector.redb")),
        Some(2),
        "collector.redb"
    );
}

/// Schema 2 → 3 rewrites every sample's key and value: each one is still
/// there with every field the old collector showed (agent, sequence number,
/// time, the measurement, the receive time).
#[test]
fn schema_2_samples_and_their_receive_times_are_all_there_after_the_migration() {
    let dir = data_dir_of(2);
    let expect = expect_of(2);
    let store = RedbStore::open(dir.path()).unwrap();
    let history = expect["history"].as_object().unwrap();
    assert_eq!(history.len(), 3);
    let mut n = 0;
    for (device, rows) in history {
        let rows = rows.as_array().unwrap();
        assert!(!rows.is_empty(), "{device}");
        let got: Vec<Value> = store
            .history(device, 0, 100_000)
            .unwrap()
            .iter()
            .map(|s| {
                let j = siaga_collector::admin::sample_json(s);
                assert!(j["received_at"].is_string(), "{device}: {j}");
                j
            })
            .collect();
        assert_eq!(&got, rows, "{device}");
        n += got.len();
    }
    let agents = store.agents().unwrap();
    let want = expect["agents"].as_array().unwrap();
    assert_eq!(agents.len(), want.len());
    assert_eq!(agents[0].id, want[0]["id"].as_str().unwrap());
    drop(store);
    assert_eq!(
        file_version(&dir.path().join("collector.redb")),
        Some(SAMPLES_FILE.version)
    );
    // Opening again changes nothing.
    let store = RedbStore::open(dir.path()).unwrap();
    let again: usize = history
        .keys()
        .map(|d| store.history(d, 0, 100_000).unwrap().len())
        .sum();
    assert_eq!(again, n);
}
