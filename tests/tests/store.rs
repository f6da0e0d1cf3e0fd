//! Store upgrades as an operator meets them: a new collector started on the
//! data directory of an older one (the schema-1 fixture of
//! `collector/tests/fixtures/store-v1`) migrates it and serves all of it; a
//! collector given a store of a newer schema refuses to start and says why.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use siaga_tests::harness::{Collector, Inventory, json_u64, ts_us};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/tests/fixtures/store-v1")
}

#[test]
fn a_collector_started_on_a_schema_1_store_migrates_it_and_serves_all_of_it() -> Result<()> {
    let expect: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expect.json"))?)?;
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("dinkes")
            .device("dinkes-core", "dinkes", "127.0.0.1")
            .device("dinkes-sw1", "dinkes", "127.0.0.2")
            .device("dinkes-sw2", "dinkes", "127.0.0.3"),
    )?;
    let root = c.enroll_user("root", "admin")?;
    std::fs::create_dir_all(&c.data_dir)?;
    for f in ["collector.redb", "tickets.redb"] {
        std::fs::copy(fixture().join(f), c.data_dir.join(f)).with_context(|| f.to_string())?;
    }
    c.serve()?;
    let log = c.log_tail(200);
    ensure!(
        log.contains("migrating the store") && log.contains("store migrated"),
        "no migration in the log:\n{log}"
    );

    for (device, rows) in expect["history"].as_object().context("history")? {
        let got = root.json(&["history", device, "--since", "3650d", "--json"])?;
        let got = got.as_array().context("history array")?;
        ensure!(
            got.iter().all(|s| s["received_at"].is_null()),
            "{device}: a sample of schema 1 shows a receive time"
        );
        // Compared as values: seq as a number, ts to the millisecond the
        // fixture was written with, whatever the JSON form (proto3 JSON
        // writes uint64 as a string and times to the microsecond).
        let keys = |rows: &[Value]| -> Vec<Value> {
            rows.iter()
                .map(|s| serde_json::json!({"agent": s["agent"], "seq": json_u64(&s["seq"]), "ts": ts_us(&s["ts"]).map(|t| t / 1000), "kind": s["kind"]}))
                .collect()
        };
        let want = rows.as_array().context("expected history array")?;
        ensure!(
            keys(got) == keys(want),
            "{device}: history differs:\n{:?}\n{:?}",
            keys(got),
            keys(want)
        );
    }
    let tickets = root.json(&["tickets", "--json"])?;
    let ids = |v: &Value| -> Vec<Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|t| serde_json::json!([t["id"], t["step"], t["problem"]]))
            .collect()
    };
    ensure!(
        ids(&tickets) == ids(&expect["tickets"]) && ids(&tickets).len() == 2,
        "tickets: {tickets}"
    );
    let events = root.json(&["events", "--since", "3650d", "--json"])?;
    // Compared as values: the fixture has the JSON of its day (`ts_us`,
    // nulls); `events --json` is proto3 JSON now (`ts`, unset keys left out).
    let norm = |v: &Value| -> Vec<Value> {
        let text = |x: &Value| x.as_str().map(str::to_string);
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                serde_json::json!({
                    "ts": ts_us(&e["ts"]).or_else(|| e["ts_us"].as_i64()),
                    "device": text(&e["device"]),
                    "opd": text(&e["opd"]),
                    "kind": text(&e["kind"]),
                    "subject": text(&e["subject"]),
                    "from": text(&e["from"]),
                    "to": text(&e["to"]),
                    "reason": text(&e["reason"]),
                    "link": text(&e["link"]).filter(|l| !l.is_empty()),
                    "ticket": text(&e["ticket"]).filter(|t| !t.is_empty()),
                    "flapping": e["flapping"].as_bool().unwrap_or(false),
                })
            })
            .collect()
    };
    ensure!(norm(&events) == norm(&expect["events"]), "events: {events}");
    let windows = root.json(&["maintenance", "list", "--json"])?;
    // The proto3 JSON of the windows, in the stored shape of the fixture.
    let stored = |w: &Value| -> Value {
        let (sc, sch) = (&w["scope"], &w["schedule"]);
        let mut scope = serde_json::json!({"kind": sc["kind"]});
        for k in ["opd", "device", "link"] {
            if let Some(v) = sc[k].as_str() {
                scope[k] = Value::from(v);
            }
        }
        let schedule = match sch["kind"].as_str() {
            Some("once") => serde_json::json!({"kind": "once",
                "start_us": ts_us(&sch["start"]), "end_us": ts_us(&sch["end"])}),
            _ => serde_json::json!({"kind": sch["kind"], "days": sch["days"],
                "start": sch["start_time"], "duration_s": json_u64(&sch["duration_s"]),
                "utc_offset_minutes": sch["utc_offset_minutes"].as_i64().unwrap_or(0)}),
        };
        serde_json::json!({"id": json_u64(&w["id"]), "created_by": w["created_by"],
            "reason": w["reason"], "scope": scope, "schedule": schedule})
    };
    let got = Value::Array(
        windows
            .as_array()
            .into_iter()
            .flatten()
            .map(stored)
            .collect(),
    );
    ensure!(got == expect["maintenance"], "windows: {windows}");
    ensure!(c.stop(), "the collector did not stop cleanly");

    // A second start finds nothing to migrate.
    c.serve()?;
    let log = c.log_tail(100);
    let this_start = log.rsplit("==== start").next().unwrap_or_default();
    ensure!(
        this_start.contains("collector serving") && !this_start.contains("migrating the store"),
        "{this_start}"
    );
    Ok(())
}

/// Sets the schema version stored in a redb file, as a newer collector would have.
fn stamp(path: &Path, version: u64) -> Result<()> {
    const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    let db = redb::Database::open(path)?;
    let tx = db.begin_write()?;
    tx.open_table(META)?.insert("schema_version", version)?;
    tx.commit()?;
    Ok(())
}

#[test]
fn a_store_of_a_newer_schema_is_refused_with_the_file_and_both_versions() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(&Inventory::new("10s").opd("dinkes"))?;
    c.serve()?;
    ensure!(c.stop(), "the collector did not stop cleanly");

    for (file, supported) in [("collector.redb", 5), ("tickets.redb", 3)] {
        let path = c.data_dir.join(file);
        stamp(&path, 9)?;
        let err = match c.serve() {
            Ok(_) => anyhow::bail!("the collector started on {file} of schema 9"),
            Err(e) => format!("{e:#}"),
        };
        let want = format!(
            "{}: store schema version 9 is newer than this collector supports ({supported})",
            path.display()
        );
        ensure!(err.contains(&want), "expected {want:?} in:\n{err}");
        // Back to the version this collector writes, for the next file.
        stamp(&path, supported)?;
    }
    c.serve()?;
    Ok(())
}
