//! Writes a collector store with the binaries of this checkout (or those in
//! `SIAGA_BIN_DIR`: the last commit of a schema being replaced), for the
//! migration tests of the next store schema.
//!
//! ```text
//! cargo build --workspace --bins
//! cargo run -p siaga-tests --example store_fixture -- collector/tests/fixtures/store-v1
//! ```
//!
//! A real `siaga-collector serve` with an agent probing three loopback
//! addresses for a while, two letter tickets entered by the helpdesk (one
//! disposed a step further by the OPD) and a maintenance window. Once the
//! agent and the collector are stopped, the data directory's
//! `collector.redb` and `tickets.redb` are copied to OUT, beside
//! `expect.json`: what the collector itself answered about that data
//! (every sample per device with all its fields, the tickets, the events,
//! the windows, the agents) just before it stopped. A migration test opens
//! the copied store with a newer collector and compares it with that.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use siaga_tests::harness::*;

const DEVICES: [(&str, &str); 3] = [
    ("dinkes-core", "127.0.0.1"),
    ("dinkes-sw1", "127.0.0.2"),
    ("dinkes-sw2", "127.0.0.3"),
];

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: store_fixture OUT_DIR")?,
    );
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let mut c = Collector::init()?;
    let mut inv = Inventory::new("1s").opd("dinkes");
    for (id, addr) in DEVICES {
        inv = inv.device(id, "dinkes", addr);
    }
    c.write_inventory(&inv)?;
    let hd = c.enroll_user("hd", "helpdesk")?;
    let opd = c.enroll_user_in("opd", "pemohon", "dinkes")?;
    let root = c.enroll_user("root", "admin")?;
    c.serve()?;
    let mut agent = Agent::start(c.enroll_agent("dinkes")?)?;
    wait_until(secs(60), "10 samples of every device", || {
        for (id, _) in DEVICES {
            if root.history(id)?.len() < 10 {
                return Ok(false);
            }
        }
        Ok(true)
    })?;

    let ok = |who: &Siaga, args: &[&str]| -> Result<String> {
        let o = who.run(args)?;
        if !o.status.success() {
            bail!(
                "siaga {args:?}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let mut tickets = Vec::new();
    for (letter, subject) in [
        ("005/123/DINKES/XI/2026", "Internet ruang rapat putus"),
        ("005/124/DINKES/XI/2026", "Wi-Fi lantai 2 lambat"),
    ] {
        let o = ok(
            &hd,
            &[
                "ticket",
                "new",
                "--opd",
                "dinkes",
                "--letter-number",
                letter,
                "--letter-date",
                &siaga_tests::office::letter_date(),
                "--subject",
                subject,
            ],
        )?;
        let id = o
            .strip_prefix("opened ")
            .and_then(|r| r.split(':').next())
            .with_context(|| format!("ticket new said {o:?}"))?
            .to_string();
        tickets.push(id);
    }
    ok(
        &opd,
        &[
            "ticket",
            "dispose",
            &tickets[0],
            "--note",
            "mohon ditindaklanjuti",
        ],
    )?;
    ok(
        &root,
        &[
            "maintenance",
            "add",
            "--device",
            "dinkes-sw2",
            "--from",
            "2026-11-24T22:00:00+07:00",
            "--for",
            "2h",
            "--reason",
            "ganti switch",
        ],
    )?;

    // Everything acknowledged, then the agent gone: the store is final.
    ensure!(agent.stop(), "the agent did not stop cleanly");
    let mut history = serde_json::Map::new();
    for (id, _) in DEVICES {
        // Every field of every sample, as the CLI shows it (the receive
        // time too).
        let rows = root.json(&["history", id, "--since", "3650d", "--json"])?;
        let rows: Vec<Value> = rows.as_array().into_iter().flatten().cloned().collect();
        history.insert(id.to_string(), Value::Array(rows));
    }
    let expect = json!({
        "written_by": format!("siaga-collector {}", env!("CARGO_PKG_VERSION")),
        "history": history,
        "tickets": root.json(&["tickets", "--json"])?,
        "events": root.json(&["events", "--since", "3650d", "--json"])?,
        "maintenance": root.json(&["maintenance", "list", "--json"])?,
        "agents": root.agents()?,
    });
    ensure!(c.stop(), "the collector did not stop cleanly");
    for f in ["collector.redb", "tickets.redb"] {
        std::fs::copy(c.data_dir.join(f), out.join(f))
            .with_context(|| format!("copying {f} to {}", out.display()))?;
    }
    std::fs::write(
        out.join("expect.json"),
        serde_json::to_string_pretty(&expect)? + "\n",
    )?;
    let samples: usize = history
        .values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum();
    println!(
        "wrote {} (collector.redb, tickets.redb, expect.json): {samples} samples, {} tickets, {} events",
        out.display(),
        tickets.len(),
        expect["events"].as_array().map_or(0, Vec::len)
    );
    Ok(())
}
