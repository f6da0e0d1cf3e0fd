//! The SOP audit trail anchored outside the store: every head the collector
//! writes is signed with its audit key and logged beside the revocation list;
//! documents print the signed head; `verify` catches a trail rewritten with
//! its head inside `tickets.redb`; `restore` of a backup whose trails end
//! before the signed heads is refused unless forced.

use std::process::Output;

use anyhow::{Context, Result, anyhow, ensure};
use redb::ReadableTable;
use serde_json::Value;
use siaga_collector::sop::audit::{self, AuditRecord, Head};
use siaga_tests::harness::Collector;
use siaga_tests::harness::text;
use siaga_tests::office::{OFFICE_USERS, Office};

fn verify(c: &Collector) -> Result<Output> {
    c.cmd(&["verify", "--config", &c.config.to_string_lossy()])
}

/// The ticket's trail as `siaga ticket audit --json` shows it.
fn trail(o: &Office, id: &str) -> Result<Vec<Value>> {
    match o.json("hd", &["ticket", "audit", id, "--json"])? {
        Value::Array(a) => Ok(a),
        other => Err(anyhow!("audit is not an array: {other}")),
    }
}

#[test]
fn documents_print_the_signed_head_and_a_trail_rewritten_with_its_head_fails_verify() -> Result<()>
{
    let mut o = Office::start(&OFFICE_USERS)?;
    let id = o.new_letter(
        "005/9/DINKES/XII/2026",
        &siaga_tests::office::letter_date(),
        "Internet putus",
        &[],
    )?;
    o.ok("opd", &["ticket", "dispose", &id, "--note", "asli"])?;
    o.ok("kadis", &["ticket", "dispose", &id])?;
    let records = trail(&o, &id)?;
    let head = records
        .last()
        .and_then(|r| r["hash"].as_str())
        .context("no head")?
        .to_string();
    let signed = format!("{} catatan; kepala {head}; kunci ", records.len());

    // What leaves the system carries the head and its signature.
    let card = o.ok("hd", &["ticket", "card", &id])?;
    ensure!(
        card.contains("Jejak audit (tertanda)") && card.contains(&signed),
        "card:\n{card}"
    );
    // Today as the register counts days: in the province's time (WIB), not
    // this machine's (from 17:00 UTC on, the ticket is already tomorrow's).
    let day = siaga_tests::office::letter_date();
    let register = o.ok("hd", &["register", "--from", "2026-01-01", "--to", &day])?;
    ensure!(register.contains(&signed), "register:\n{register}");
    let report = o.file("laporan.html");
    o.ok(
        "hd",
        &[
            "ticket",
            "report",
            &id,
            "--format",
            "html",
            "--out",
            &report.to_string_lossy(),
        ],
    )?;
    let html = std::fs::read_to_string(&report)?;
    ensure!(
        html.contains("Jejak audit (tertanda)") && html.contains(&signed),
        "report footer lacks the signed head"
    );
    ensure!(o.collector.stop(), "the collector did not stop cleanly");
    let clean = verify(&o.collector)?;
    ensure!(clean.status.success(), "{}", text(&clean));

    // Behind the collector's back, by someone who knows the format and the
    // hashing: record 1 says another user, and every hash after it and the
    // head are recomputed, so the chain itself is consistent again.
    {
        let db = redb::Database::open(o.collector.data_dir.join("tickets.redb"))?;
        let audit_t: redb::TableDefinition<(&str, u64), &[u8]> =
            redb::TableDefinition::new("sop_audit");
        let heads_t: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("sop_heads");
        let w = db.begin_write()?;
        {
            let mut t = w.open_table(audit_t)?;
            let mut old: Vec<AuditRecord> = Vec::new();
            for item in t.range((id.as_str(), 0u64)..=(id.as_str(), u64::MAX))? {
                old.push(serde_json::from_slice(item?.1.value())?);
            }
            ensure!(old.len() >= 3, "{} records", old.len());
            let mut forged = Vec::new();
            for (i, r) in old.into_iter().enumerate() {
                let mut ev = r.event;
                if i == 1 {
                    ev.user = "orang-lain".into();
                }
                audit::append(&mut forged, &id, ev);
            }
            ensure!(
                audit::verify(&forged).is_ok(),
                "the forged chain is consistent"
            );
            for r in &forged {
                t.insert((id.as_str(), r.index), serde_json::to_vec(r)?.as_slice())?;
            }
            let h: Head = audit::head(&forged);
            w.open_table(heads_t)?
                .insert(id.as_str(), serde_json::to_vec(&h)?.as_slice())?;
        }
        w.commit()?;
    }
    let out = verify(&o.collector)?;
    let said = text(&out);
    ensure!(
        !out.status.success(),
        "verify passed a rewritten trail: {said}"
    );
    ensure!(
        said.contains(&id)
            && said.contains("is not the one the collector signed: the trail was rewritten"),
        "{said}"
    );
    Ok(())
}

#[test]
fn restoring_a_backup_older_than_the_signed_heads_is_refused_without_force() -> Result<()> {
    let mut o = Office::start(&OFFICE_USERS)?;
    let id = o.new_letter(
        "005/10/DINKES/XII/2026",
        &siaga_tests::office::letter_date(),
        "Switch mati",
        &[],
    )?;
    o.ok("opd", &["ticket", "dispose", &id])?;
    let archive = o.file("backup.tar");
    let root = o.user("root")?.config.to_string_lossy().to_string();
    let b = o.collector.cmd(&[
        "backup",
        "--out",
        &archive.to_string_lossy(),
        "--user-config",
        &root,
    ])?;
    ensure!(b.status.success(), "backup: {}", text(&b));
    // The trail goes on after the backup: two more dispositions.
    o.ok("kadis", &["ticket", "dispose", &id])?;
    o.ok("kabid", &["ticket", "dispose", &id, "--to", "prakom"])?;
    let len = trail(&o, &id)?.len();
    ensure!(o.collector.stop(), "the collector did not stop cleanly");

    let config = o.collector.config.to_string_lossy().to_string();
    let from = archive.to_string_lossy().to_string();
    let refused = o
        .collector
        .cmd(&["restore", "--from", &from, "--config", &config])?;
    let said = text(&refused);
    ensure!(
        !refused.status.success(),
        "restore rolled the trail back: {said}"
    );
    ensure!(
        said.contains("restoring it would lose 2 audit record(s) of 1 ticket(s)")
            && said.contains(&format!("{id}: {len} → {} records", len - 2))
            && said.contains("--force"),
        "{said}"
    );
    // The data directory is as it was: verify still passes.
    let v = verify(&o.collector)?;
    ensure!(v.status.success(), "{}", text(&v));

    // Forced: restored, the loss said, and the rolled-back heads signed anew,
    // so verify passes on the restored trails.
    let forced = o
        .collector
        .cmd(&["restore", "--from", &from, "--config", &config, "--force"])?;
    let said = text(&forced);
    ensure!(forced.status.success(), "{said}");
    ensure!(said.contains("would lose 2 audit record(s)"), "{said}");
    let v = verify(&o.collector)?;
    ensure!(v.status.success(), "after a forced restore: {}", text(&v));
    let log = std::fs::read_to_string(o.collector.data_dir.join("audit-heads.jsonl"))?;
    ensure!(
        log.contains(&format!("rolled back from {len} to {} records", len - 2)),
        "{log}"
    );
    Ok(())
}
