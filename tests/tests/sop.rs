//! The SOP disposition chain end to end: a real collector, real certificates,
//! one enrolled user per role, the `siaga` CLI for every step.

use std::process::Output;

use anyhow::{Context, Result, anyhow, bail, ensure};
use redb::ReadableTable;
use serde_json::Value;
use siaga_tests::harness::{Collector, Inventory, bin};
use siaga_tests::office::{OFFICE_USERS, Office, letter_date};

/// What the SOP tests do with the office beyond running `siaga`.
trait Letters {
    /// A letter ticket entered by the helpdesk; its number.
    fn letter(&self, extra: &[&str]) -> Result<String>;
    /// The same with another letter number (one letter is one ticket).
    fn letter_no(&self, number: &str, extra: &[&str]) -> Result<String>;
    fn audit(&self, id: &str) -> Result<Vec<Value>>;
}

impl Letters for Office {
    fn letter(&self, extra: &[&str]) -> Result<String> {
        self.letter_no("005/123/DINKES/XI/2026", extra)
    }

    fn letter_no(&self, number: &str, extra: &[&str]) -> Result<String> {
        self.new_letter(number, &letter_date(), "Internet ruang rapat putus", extra)
    }

    fn audit(&self, id: &str) -> Result<Vec<Value>> {
        match self.json("hd", &["ticket", "audit", id, "--json"])? {
            Value::Array(a) => Ok(a),
            other => bail!("audit is not an array: {other}"),
        }
    }
}

fn event_type(rec: &Value) -> &str {
    rec["event"]["kind"].as_str().unwrap_or_default()
}

#[test]
fn seven_people_walk_a_letter_ticket_through_all_ten_steps() -> Result<()> {
    let o = Office::start(&OFFICE_USERS)?;
    let id = o.letter(&[])?;
    let step = |who: &str, args: &[&str]| -> Result<String> {
        let mut all = vec!["ticket"];
        all.extend_from_slice(args);
        o.ok(who, &all)
    };
    step("opd", &["dispose", &id, "--note", "mohon ditindaklanjuti"])?;
    step("kadis", &["dispose", &id, "--note", "Kabid Aptika: segera"])?;
    step("kabid", &["dispose", &id, "--to", "prakom"])?;
    step("prakom", &["dispose", &id])?;
    step("hd", &["dispose", &id, "--to", "teknisi"])?;
    step("teknisi", &["update", &id, "--status", "menuju lokasi"])?;
    let err = o.refused(
        "teknisi",
        &[
            "ticket",
            "dispose",
            &id,
            "--no-measurement-reason",
            "perangkat mati total",
        ],
    )?;
    ensure!(err.contains("acknowledgement"), "{err}");
    step("opd", &["acknowledge", &id, "--by", "Andi, Kasubag Umum"])?;
    let err = o.refused("teknisi", &["ticket", "dispose", &id])?;
    ensure!(err.contains("needs measurements before and after"), "{err}");
    step(
        "teknisi",
        &[
            "dispose",
            &id,
            "--no-measurement-reason",
            "perangkat mati total",
        ],
    )?;
    step("hd", &["dispose", &id])?;
    step("prakom", &["dispose", &id])?;
    step("kabid", &["dispose", &id])?;
    let last = step("sekdis", &["dispose", &id])?;
    ensure!(
        last.contains("acting for kepala_dinas") && last.contains("selesai"),
        "{last}"
    );

    let t = o.turn(&id)?;
    ensure!(t["closed_at"].is_string() && t["step"] == 10, "{t}");
    let card = o.ok("hd", &["ticket", "card", &id])?;
    ensure!(
        card.starts_with("KARTU KENDALI / LEMBAR DISPOSISI"),
        "{card}"
    );
    for words in [
        "Langkah 1",
        "mohon ditindaklanjuti",
        "Pranata Komputer: prakom",
        "Status: menuju lokasi",
        "Laporan pekerjaan diketahui oleh Andi, Kasubag Umum",
        "Tanpa pengukuran: perangkat mati total",
        "Langkah 8a",
        "Langkah 8b",
        "a.n. Kepala Dinas",
        "Selesai pada",
    ] {
        ensure!(card.contains(words), "card lacks {words:?}:\n{card}");
    }
    let dispositions = card.lines().filter(|l| l.contains(" → ")).count();
    // Opened, 10 dispositions (step 8 twice), a status update, the acknowledgement.
    ensure!(dispositions == 13, "{dispositions} rows:\n{card}");
    let html = o.ok(
        "hd",
        &["ticket", "card", &id, "--format", "html", "--lang", "en"],
    )?;
    ensure!(
        html.starts_with("<!DOCTYPE html>") && html.contains("CONTROL CARD"),
        "{html}"
    );
    Ok(())
}

#[test]
fn every_other_role_is_refused_and_the_refusal_is_audited() -> Result<()> {
    let o = Office::start(&OFFICE_USERS)?;
    let id = o.letter(&[])?;
    let mut refusals = 0;
    for (name, role) in OFFICE_USERS {
        if role == "pemohon" {
            continue;
        }
        let err = o.refused(name, &["ticket", "dispose", &id])?;
        ensure!(
            err.contains(&format!("step 1 belongs to pemohon; you are {role}")),
            "{name}: {err}"
        );
        refusals += 1;
    }
    let audit = o.audit(&id)?;
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|r| event_type(r) == "refused")
        .collect();
    ensure!(
        refused.len() == refusals,
        "{} refusals in {audit:?}",
        refused.len()
    );
    ensure!(o.turn(&id)?["step"] == 1);
    // The Sekretaris Dinas takes step 2 for the Kepala Dinas, recorded as acting.
    o.ok("opd", &["ticket", "dispose", &id])?;
    o.ok("sekdis", &["ticket", "dispose", &id])?;
    let audit = o.audit(&id)?;
    let last = audit.last().ok_or_else(|| anyhow!("empty audit"))?;
    ensure!(
        last["event"]["user"] == "sekdis"
            && last["event"]["role"] == "sekretaris_dinas"
            && last["event"]["acting_for"] == "kepala_dinas",
        "{last}"
    );
    // The admin manages users but takes no step without the role.
    let err = o.refused("root", &["ticket", "dispose", &id])?;
    ensure!(
        err.contains("step 3 belongs to kabid_aptika; you are admin"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_duplicate_ticket_is_voided_by_the_kabid_kept_in_the_trail_and_the_register() -> Result<()> {
    let o = Office::start(&OFFICE_USERS)?;
    let keep = o.letter(&[])?;
    let dup = o.new_letter(
        "005/124/DINKES/XI/2026",
        &letter_date(),
        "Internet ruang rapat putus (dikirim dua kali)",
        &[],
    )?;
    o.ok("opd", &["ticket", "dispose", &dup])?;
    // Not every role may void; the refusal names who may, and is audited.
    for who in ["hd", "teknisi", "opd", "prakom"] {
        let err = o.refused(who, &["ticket", "void", &dup, "--reason", "duplikat"])?;
        ensure!(
            err.contains("a ticket is voided by kabid_aptika or kepala_dinas or admin"),
            "{who}: {err}"
        );
    }
    let err = o.refused("kabid", &["ticket", "void", &dup, "--reason", " "])?;
    ensure!(err.contains("reason"), "{err}");
    let said = o.ok(
        "kabid",
        &[
            "ticket",
            "void",
            &dup,
            "--reason",
            &format!("duplikat {keep}"),
        ],
    )?;
    ensure!(said.contains(&format!("{dup}: voided at step 2")), "{said}");
    // Closed as void: no one takes a step any more, the turn says so.
    let err = o.refused("kadis", &["ticket", "dispose", &dup])?;
    ensure!(err.contains("the ticket is void"), "{err}");
    let turn = o.turn(&dup)?;
    ensure!(
        turn["void_reason"] == format!("duplikat {keep}").as_str() && turn["closed_at"].is_string(),
        "{turn}"
    );
    let text = o.ok("hd", &["ticket", "turn", &dup])?;
    ensure!(text.contains("void at"), "{text}");
    // Never deleted: the trail ends with the void, the register shows it.
    let audit = o.audit(&dup)?;
    let voided: Vec<&Value> = audit.iter().filter(|r| event_type(r) == "voided").collect();
    ensure!(
        voided.len() == 1
            && voided[0]["event"]["user"] == "kabid"
            && voided[0]["event"]["voided"]["reason"] == format!("duplikat {keep}").as_str(),
        "{voided:?}"
    );
    let refusals = audit.iter().filter(|r| event_type(r) == "refused").count();
    // Four roles, the empty reason, the step tried on the void ticket.
    ensure!(refusals == 6, "{refusals} refusals in {audit:?}");
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).context("offset")?)
        .format("%Y-%m-%d")
        .to_string();
    let csv_text = o.ok("hd", &["register", "--from", &today, "--to", &today])?;
    let mut rd = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = rd.records().collect::<Result<_, _>>()?;
    let row = rows
        .iter()
        .find(|r| &r[0] == dup.as_str())
        .ok_or_else(|| anyhow!("{dup} not in the register:\n{csv_text}"))?;
    ensure!(
        row[6] == *format!("Batal: duplikat {keep}") && row[8] == *today,
        "{row:?}"
    );
    ensure!(rows.iter().any(|r| &r[0] == keep.as_str()), "{csv_text}");
    // The other ticket goes on.
    o.ok("opd", &["ticket", "dispose", &keep])?;
    Ok(())
}

#[test]
fn return_goes_back_one_step_and_restarts_its_clock() -> Result<()> {
    let o = Office::start(&OFFICE_USERS)?;
    // Urgent: calendar time, so the due time is exactly a day after the step starts.
    let id = o.letter(&["--urgent"])?;
    o.ok("opd", &["ticket", "dispose", &id])?;
    o.ok("kadis", &["ticket", "dispose", &id])?;
    let before = o.turn(&id)?;
    ensure!(before["step"] == 3, "{before}");
    let err = o.refused("kabid", &["ticket", "return", &id, "--reason", " "])?;
    ensure!(err.contains("reason"), "{err}");
    o.ok(
        "kabid",
        &[
            "ticket",
            "return",
            &id,
            "--reason",
            "disposisi belum lengkap",
        ],
    )?;
    let after = o.turn(&id)?;
    ensure!(
        after["step"] == 2 && after["role"] == "kepala_dinas",
        "{after}"
    );
    let audit = o.audit(&id)?;
    let ret = audit.last().ok_or_else(|| anyhow!("empty audit"))?;
    ensure!(event_type(ret) == "returned", "{ret}");
    let at = chrono::DateTime::parse_from_rfc3339(ret["event"]["at"].as_str().unwrap_or_default())?;
    let due = chrono::DateTime::parse_from_rfc3339(after["due_at"].as_str().unwrap_or_default())?;
    ensure!(
        due - at == chrono::Duration::days(1),
        "step 2's clock restarts at the return: {at} → {due}"
    );
    Ok(())
}

#[test]
fn the_register_csv_holds_exactly_the_period() -> Result<()> {
    // A letter names a device of its OPD's inventory.
    let collector = Collector::init()?;
    collector.write_inventory(&Inventory::new("10s").opd("dinkes").device(
        "dinkes-rtr",
        "dinkes",
        "198.18.41.1",
    ))?;
    let o = Office::serve(collector, &OFFICE_USERS)?;
    let a = o.letter(&[])?;
    let b = o.letter_no("005/124/DINKES/XI/2026", &["--device", "dinkes-rtr"])?;
    o.ok("opd", &["ticket", "dispose", &a])?;
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).context("offset")?);
    let day = today.format("%Y-%m-%d").to_string();
    let csv_text = o.ok("hd", &["register", "--from", &day, "--to", &day])?;
    let mut rd = csv::Reader::from_reader(csv_text.as_bytes());
    let headers: Vec<String> = rd.headers()?.iter().map(str::to_string).collect();
    ensure!(
        headers
            == [
                "Nomor",
                "Tanggal",
                "OPD",
                "Asal",
                "Uraian gangguan",
                "Perangkat/link",
                "Langkah saat ini",
                "Teknisi",
                "Tanggal selesai",
                "Total durasi",
                "Langkah terlambat",
                "Jejak audit (tertanda)"
            ],
        "{headers:?}"
    );
    let rows: Vec<csv::StringRecord> = rd.records().collect::<Result<_, _>>()?;
    let numbers: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    ensure!(numbers == [a.as_str(), b.as_str()], "{numbers:?}");
    ensure!(
        &rows[0][3] == "005/123/DINKES/XI/2026" && rows[0][1] == *day,
        "{:?}",
        rows[0]
    );
    ensure!(
        rows[0][6].starts_with("2 ") && rows[1][6].starts_with("1 "),
        "{rows:?}"
    );
    ensure!(&rows[1][5] == "dinkes-rtr", "{:?}", rows[1]);
    // Each row carries its ticket's signed audit head: a opened and disposed
    // (2 records), b opened (1).
    ensure!(
        rows[0][11].starts_with("2 catatan; kepala ")
            && rows[1][11].starts_with("1 catatan; kepala "),
        "{rows:?}"
    );
    let old = o.ok(
        "hd",
        &["register", "--from", "2020-01-01", "--to", "2020-12-31"],
    )?;
    ensure!(
        old.lines().count() == 1,
        "only the header for a period without tickets: {old}"
    );
    let xlsx = o.collector.root().join("register.xlsx");
    let xlsx_s = xlsx.to_string_lossy().to_string();
    o.ok(
        "hd",
        &[
            "register", "--from", &day, "--to", &day, "--format", "xlsx", "--out", &xlsx_s,
        ],
    )?;
    ensure!(
        std::fs::read(&xlsx)?.starts_with(b"PK"),
        "an xlsx is a zip archive"
    );
    Ok(())
}

#[test]
fn editing_the_stored_audit_trail_is_detected_by_verify() -> Result<()> {
    let mut o = Office::start(&OFFICE_USERS)?;
    let id = o.letter(&[])?;
    o.ok("opd", &["ticket", "dispose", &id, "--note", "asli"])?;
    o.ok("kadis", &["ticket", "dispose", &id])?;
    // The serving collector checks the trails too, for the admin only.
    let trails = o.json("root", &["trails", "--json"])?;
    ensure!(
        trails
            .as_array()
            .is_some_and(|t| t.len() == 1 && t[0]["ticket"] == id.as_str() && t[0]["ok"] == true),
        "{trails}"
    );
    ensure!(o.ok("root", &["trails"])?.contains("intact"));
    let err = o.refused("hd", &["trails"])?;
    ensure!(err.contains("admin"), "{err}");
    o.collector.stop();
    let verify = |c: &Collector| -> Result<Output> {
        let cfg = c.config.to_string_lossy().to_string();
        Ok(std::process::Command::new(bin("siaga-collector")?)
            .args(["verify", "--config", &cfg])
            .output()?)
    };
    let clean = verify(&o.collector)?;
    ensure!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    // Behind the collector's back: change the note of record 1.
    {
        let db = redb::Database::open(o.collector.data_dir.join("tickets.redb"))?;
        let table: redb::TableDefinition<(&str, u64), &[u8]> =
            redb::TableDefinition::new("sop_audit");
        let w = db.begin_write()?;
        {
            let mut t = w.open_table(table)?;
            let raw = t
                .get((id.as_str(), 1u64))?
                .ok_or_else(|| anyhow!("no record 1"))?
                .value()
                .to_vec();
            let text = String::from_utf8(raw)?.replace("\"asli\"", "\"palsu\"");
            ensure!(text.contains("palsu"), "the record holds the note: {text}");
            t.insert((id.as_str(), 1u64), text.as_bytes())?;
        }
        w.commit()?;
    }
    let out = verify(&o.collector)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !out.status.success(),
        "verify passed a tampered trail: {text}"
    );
    ensure!(
        text.contains(&id) && text.contains("record 1") && text.contains("altered"),
        "{text}"
    );
    o.collector.serve()?;
    let err = o.refused("root", &["trails"])?;
    ensure!(err.contains("1 of 1 audit trails are broken"), "{err}");
    let out = o.user("root")?.run(&["trails", "--json"])?;
    ensure!(!out.status.success(), "a broken trail exits 1");
    let broken: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        broken[0]["ticket"] == id.as_str()
            && broken[0].get("ok").is_none()
            && broken[0]["index"] == "1",
        "{broken}"
    );
    Ok(())
}

#[test]
fn the_admin_grants_and_revokes_roles_and_nobody_else_may() -> Result<()> {
    let o = Office::start(&[&OFFICE_USERS[..], &[("wati", "tim_teknis")]].concat())?;
    let a = o.letter(&[])?;
    let b = o.letter_no("005/124/DINKES/XI/2026", &[])?;
    for id in [&a, &b] {
        o.ok("opd", &["ticket", "dispose", id])?;
        o.ok("kadis", &["ticket", "dispose", id])?;
    }
    let err = o.refused("wati", &["ticket", "dispose", &a])?;
    ensure!(
        err.contains("step 3 belongs to kabid_aptika; you are tim_teknis"),
        "{err}"
    );
    // Someone without the admin role may not grant, and the attempt is
    // audited (the policy gate refuses it, in the API's audit trail).
    let err = o.refused("hd", &["user", "grant", "wati", "kabid_aptika"])?;
    ensure!(
        err.contains("Users/GrantRole is for admin; you are hd (helpdesk)"),
        "{err}"
    );
    let trail = std::fs::read_to_string(o.collector.dir().join("data").join("api-audit.jsonl"))?;
    let refused: Vec<Value> = trail
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()?
        .into_iter()
        .filter(|r| r["rpc"] == "/siaga.v1.Users/GrantRole")
        .collect();
    ensure!(
        refused.len() == 1
            && refused[0]["user"] == "hd"
            && refused[0]["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("refused")),
        "{trail}"
    );
    let err = o.refused("root", &["user", "grant", "wati", "bupati"])?;
    ensure!(err.contains("`bupati` is not a role"), "{err}");

    let granted = o.ok("root", &["user", "grant", "wati", "kabid_aptika"])?;
    ensure!(granted == "wati: tim_teknis, kabid_aptika", "{granted}");
    let list = o.json("root", &["user", "list", "--json"])?;
    let wati = list
        .as_array()
        .and_then(|l| l.iter().find(|u| u["name"] == "wati"))
        .ok_or_else(|| anyhow!("wati not listed: {list}"))?;
    ensure!(
        wati["roles"] == serde_json::json!(["tim_teknis", "kabid_aptika"]),
        "{wati}"
    );
    o.ok("wati", &["ticket", "dispose", &a, "--to", "prakom"])?;
    ensure!(o.turn(&a)?["step"] == 4);

    let revoked = o.json(
        "root",
        &["user", "revoke", "wati", "kabid_aptika", "--json"],
    )?;
    ensure!(
        revoked["name"] == "wati" && revoked["roles"] == serde_json::json!(["tim_teknis"]),
        "{revoked}"
    );
    let err = o.refused("wati", &["ticket", "dispose", &b])?;
    ensure!(
        err.contains("step 3 belongs to kabid_aptika; you are tim_teknis"),
        "{err}"
    );
    ensure!(o.turn(&b)?["step"] == 3);
    let trail = std::fs::read_to_string(o.collector.dir().join("users").join("audit.jsonl"))?;
    let done: Vec<(String, String)> = trail
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["outcome"] == "done")
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default().to_string(),
                r["by"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ensure!(
        done == [
            ("grant".into(), "root".into()),
            ("revoke".into(), "root".into())
        ],
        "{trail}"
    );
    Ok(())
}

#[test]
fn a_revoked_users_certificate_is_refused_from_then_on() -> Result<()> {
    let o = Office::start(&OFFICE_USERS)?;
    let id = o.letter(&[])?;
    let inbox = o.ok("opd", &["inbox"])?;
    ensure!(inbox.contains(&id), "{inbox}");
    let revoke = |args: &[&str]| -> Result<Output> {
        let cfg = o.collector.config.to_string_lossy().to_string();
        let mut all = vec!["revoke-cert", "--config", cfg.as_str()];
        all.extend_from_slice(args);
        Ok(std::process::Command::new(bin("siaga-collector")?)
            .args(&all)
            .output()?)
    };
    let unknown = revoke(&["--name", "nobody"])?;
    ensure!(
        unknown.status.code() == Some(64)
            && String::from_utf8_lossy(&unknown.stderr).contains("no user \"nobody\""),
        "{unknown:?}"
    );
    let out = revoke(&["--name", "opd", "--reason", "laptop hilang"])?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success()
            && said.contains("revoked certificate")
            && said.contains("siaga://user/opd"),
        "{out:?}"
    );
    let err = o.refused("opd", &["inbox"])?;
    ensure!(
        err.contains("has been revoked") && err.contains("siaga://user/opd"),
        "{err}"
    );
    let err = o.refused("opd", &["ticket", "dispose", &id])?;
    ensure!(err.contains("has been revoked"), "{err}");
    ensure!(o.turn(&id)?["step"] == 1, "the revoked user moved nothing");
    // Everyone else goes on.
    o.ok("kadis", &["inbox"])?;
    Ok(())
}

/// A webhook receiver on loopback: every POSTed JSON body, in arrival order.
fn webhook_receiver() -> Result<(String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let store = store.clone();
            std::thread::spawn(move || {
                let Ok(mut out) = conn.try_clone() else {
                    return;
                };
                let mut rd = BufReader::new(conn);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match rd.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if rd.read_exact(&mut body).is_err() {
                        return;
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        store.lock().unwrap_or_else(|p| p.into_inner()).push(v);
                    }
                    if out
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok((url, seen))
}

#[test]
fn a_late_urgent_step_is_escalated_exactly_once() -> Result<()> {
    let (url, seen) = webhook_receiver()?;
    let collector = Collector::init()?;
    collector.write_inventory(&Inventory::new("10s").opd("dinkes"))?;
    // Step 1's standard: one minute (the shortest the SOP file allows).
    let sop = collector.dir().join("sop.toml");
    let text = std::fs::read_to_string(&sop)?;
    ensure!(text.contains("time_standard = \"1d\""), "{text}");
    std::fs::write(
        &sop,
        text.replacen("time_standard = \"1d\"", "time_standard = \"1m\"", 1),
    )?;
    let mut hook = toml::Table::new();
    hook.insert("url".into(), toml::Value::String(url));
    siaga_tests::harness::set_toml(
        &collector.config,
        "notify.webhook",
        toml::Value::Array(vec![toml::Value::Table(hook)]),
    )?;
    siaga_tests::harness::set_toml(
        &collector.config,
        "notify.escalation_every",
        toml::Value::String("200ms".into()),
    )?;
    let o = Office::serve(collector, &OFFICE_USERS)?;
    let a = o.letter(&["--urgent"])?;
    // A second late ticket, opened later: when its escalation arrives, the
    // collector has looked at the first one many times since.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let b = o.letter_no("005/124/DINKES/XI/2026", &["--urgent"])?;
    let escalations = |id: &str| -> Vec<Value> {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|v| v["event"] == "escalated" && v["ticket"] == id)
            .cloned()
            .collect()
    };
    siaga_tests::harness::wait_until(
        std::time::Duration::from_secs(120),
        "the escalation of the second ticket",
        || Ok(!escalations(&b).is_empty()),
    )
    .map_err(|e| anyhow!("{e}\ncollector log:\n{}", o.collector.log_tail(30)))?;
    let ea = escalations(&a);
    ensure!(ea.len() == 1, "exactly one escalation of {a}: {ea:?}");
    let e = &ea[0];
    let roles: Vec<&str> = e["escalation"]["notify_roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        e["step"] == 1
            && e["escalation"]["level"] == 1
            && roles.first() == Some(&"pemohon")
            && roles.len() >= 2,
        "{e}"
    );
    ensure!(escalations(&b).len() == 1, "{:?}", escalations(&b));
    let t = o.turn(&a)?;
    ensure!(t["overdue"] == true, "{t}");
    let trail = o.audit(&a)?;
    let recorded = trail
        .iter()
        .filter(|r| event_type(r) == "escalated")
        .count();
    ensure!(recorded == 1, "{trail:?}");
    Ok(())
}
