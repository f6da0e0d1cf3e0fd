//! Backups as an operator takes them: `siaga-collector backup` while an
//! agent streams samples into the collector, `restore` into a fresh data
//! directory, and a collector started there has the same tickets, events and
//! samples, up to the moment of the backup.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use siaga_tests::harness::*;

const DEVICES: usize = 20;

fn device(i: usize) -> String {
    format!("dinkes-d{i:02}")
}

/// `manifest.json` of an archive, read with the system's tar.
fn manifest(archive: &Path) -> Result<Value> {
    let o = std::process::Command::new("tar")
        .args(["-xOf", path_str(archive)?, "manifest.json"])
        .output()
        .context("running tar")?;
    ensure!(o.status.success(), "tar: {}", text(&o));
    Ok(serde_json::from_slice(&o.stdout)?)
}

fn rows(manifest: &Value, file: &str, table: &str) -> Result<u64> {
    manifest["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == file)
        .and_then(|f| f["tables"][table].as_u64())
        .with_context(|| format!("no {file}/{table} in {manifest}"))
}

/// Every device's samples, `(agent, seq)` → the sample as `siaga history --json` shows it.
fn samples(who: &Siaga) -> Result<HashMap<(String, u64), Value>> {
    let mut all = HashMap::new();
    for i in 1..=DEVICES {
        for s in as_vec(who.json(&["history", &device(i), "--since", "3650d", "--json"])?) {
            let key = (
                s["agent"].as_str().unwrap_or_default().to_string(),
                json_u64(&s["seq"]).context("seq")?,
            );
            ensure!(all.insert(key, s).is_none(), "a sample twice");
        }
    }
    Ok(all)
}

fn as_vec(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        _ => Vec::new(),
    }
}

fn without_overdue(v: &Value) -> Vec<Value> {
    as_vec(v.clone())
        .into_iter()
        .map(|mut t| {
            if let Some(o) = t.as_object_mut() {
                o.remove("overdue");
            }
            t
        })
        .collect()
}

#[test]
fn a_backup_taken_under_load_restores_the_same_tickets_events_and_samples() -> Result<()> {
    let mut c = Collector::init()?;
    let mut inv = Inventory::new("1s").opd("dinkes");
    for i in 1..=DEVICES {
        inv = inv.device(&device(i), "dinkes", &format!("127.0.0.{i}"));
    }
    c.write_inventory(&inv)?;
    let root = c.enroll_user("root", "admin")?;
    let hd = c.enroll_user("hd", "helpdesk")?;
    let opd = c.enroll_user_in("opd", "pemohon", "dinkes")?;
    let teknisi = c.enroll_user("teknisi", "tim_teknis")?;
    c.serve()?;
    let mut agent = Agent::start(c.enroll_agent("dinkes")?)?;
    wait_until(secs(60), "5 samples of every device", || {
        Ok(root.history(&device(DEVICES))?.len() >= 5)
    })?;

    let ok = |who: &Siaga, args: &[&str]| -> Result<String> {
        let o = who.run(args)?;
        ensure!(o.status.success(), "siaga {args:?}: {}", text(&o));
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let mut tickets = Vec::new();
    for n in 1..=3 {
        let o = ok(
            &hd,
            &[
                "ticket",
                "new",
                "--opd",
                "dinkes",
                "--letter-number",
                &format!("005/{n}/DINKES/XI/2026"),
                "--letter-date",
                &siaga_tests::office::letter_date(),
                "--subject",
                &format!("Gangguan {n}"),
            ],
        )?;
        tickets.push(
            o.strip_prefix("opened ")
                .and_then(|r| r.split(':').next())
                .with_context(|| o.clone())?
                .to_string(),
        );
    }
    ok(
        &opd,
        &["ticket", "dispose", &tickets[0], "--note", "segera"],
    )?;
    ok(
        &root,
        &[
            "maintenance",
            "add",
            "--device",
            &device(2),
            "--from",
            "2026-11-24T22:00:00+07:00",
            "--for",
            "2h",
        ],
    )?;
    let tickets_before = root.json(&["tickets", "--json"])?;

    // Under load: the agent keeps streaming a sample per device and second meanwhile.
    let archive = c.root().join("backup.tar");
    let root_cfg = path_str(&root.config)?.to_string();
    let o = c.cmd(&[
        "backup",
        "--out",
        path_str(&archive)?,
        "--user-config",
        &root_cfg,
    ])?;
    ensure!(o.status.success(), "backup: {}", text(&o));
    ensure!(text(&o).contains("3 tickets"), "{}", text(&o));
    let m = manifest(&archive)?;
    let backed_up = rows(&m, "collector.redb", "samples")?;
    let events_backed_up = rows(&m, "tickets.redb", "health_events")? as usize;
    ensure!(backed_up >= 5 * DEVICES as u64, "{m}");
    ensure!(rows(&m, "tickets.redb", "sop_tickets")? == 3, "{m}");

    // Backups are for admin.
    let refused = c.root().join("refused.tar");
    let o = c.cmd(&[
        "backup",
        "--out",
        path_str(&refused)?,
        "--user-config",
        path_str(&teknisi.config)?,
    ])?;
    ensure!(
        !o.status.success()
            && text(&o).contains("Admin/Backup is for admin; you are teknisi (tim_teknis)"),
        "{}",
        text(&o)
    );
    ensure!(!refused.exists() && !c.root().join("refused.tar.partial").exists());
    // Restore refuses a data directory a collector runs on, even with --force.
    let config = path_str(&c.config)?.to_string();
    let o = c.cmd(&[
        "restore",
        "--from",
        path_str(&archive)?,
        "--config",
        &config,
        "--force",
    ])?;
    ensure!(
        !o.status.success() && text(&o).contains("a collector is running"),
        "{}",
        text(&o)
    );

    // More samples after the backup point, then everything stops.
    let seen = root.history(&device(1))?.len();
    wait_until(secs(30), "samples after the backup", || {
        Ok(root.history(&device(1))?.len() >= seen + 3)
    })?;
    ensure!(agent.stop(), "the agent did not stop cleanly");
    let original = samples(&root)?;
    let events_original = as_vec(root.json(&["events", "--since", "3650d", "--json"])?);
    ensure!(c.stop(), "the collector did not stop cleanly");

    // Not over the old data without --force.
    let o = c.cmd(&[
        "restore",
        "--from",
        path_str(&archive)?,
        "--config",
        &config,
    ])?;
    ensure!(
        !o.status.success() && text(&o).contains("not empty") && text(&o).contains("--force"),
        "{}",
        text(&o)
    );
    // Into a fresh data directory.
    set_toml(&c.config, "data_dir", "data-restored".into())?;
    c.data_dir = c.dir().join("data-restored");
    let o = c.cmd(&[
        "restore",
        "--from",
        path_str(&archive)?,
        "--config",
        &config,
    ])?;
    ensure!(o.status.success(), "restore: {}", text(&o));
    ensure!(
        text(&o).contains(&format!("{backed_up} samples")),
        "{}",
        text(&o)
    );
    c.serve()?;

    // The same tickets.
    let tickets_after = root.json(&["tickets", "--json"])?;
    ensure!(
        without_overdue(&tickets_after) == without_overdue(&tickets_before),
        "tickets differ:\n{tickets_before}\n{tickets_after}"
    );
    ensure!(
        root.json(&["maintenance", "list", "--json"])?
            .as_array()
            .map_or(0, Vec::len)
            == 1
    );
    // The events up to the backup (the restored collector may add its own after).
    let events_after = as_vec(root.json(&["events", "--since", "3650d", "--json"])?);
    ensure!(
        events_after.len() >= events_backed_up
            && events_after[..events_backed_up] == events_original[..events_backed_up],
        "events differ"
    );
    // The samples up to the backup: as many as the manifest says, each one
    // as the original collector had it, and no hole: every original sample
    // of the agent up to the newest one restored is there.
    let restored = samples(&root)?;
    ensure!(
        restored.len() as u64 == backed_up,
        "{} samples restored, the manifest says {backed_up}",
        restored.len()
    );
    for (k, s) in &restored {
        ensure!(original.get(k) == Some(s), "restored {k:?} differs: {s}");
        ensure!(s["received_at"].is_string(), "{s}");
    }
    let newest = restored.keys().map(|(_, seq)| *seq).max().unwrap_or(0);
    let expected: BTreeSet<&(String, u64)> =
        original.keys().filter(|(_, seq)| *seq <= newest).collect();
    let got: BTreeSet<&(String, u64)> = restored.keys().collect();
    ensure!(
        got == expected,
        "restored samples are not the original ones up to seq {newest}"
    );
    ensure!(
        (original.len() as u64) > backed_up,
        "no sample arrived after the backup"
    );
    Ok(())
}
