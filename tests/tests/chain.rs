//! A detected ticket and a letter ticket go through the same SOP chain:
//! a real device in a network namespace loses every packet, the collector
//! opens the ticket by itself, and the same seven people walk both tickets
//! through all ten steps with the `siaga` CLI. Needs root (namespaces, ICMP).

use anyhow::{Result, anyhow, ensure};
use serde_json::Value;
use siaga_tests::harness::{Agent, Collector, json_bool};
use siaga_tests::lab::Lab;
use siaga_tests::office::{Office, office_users_but, wait_device_up, wait_for_ticket};

/// Walks one ticket from where it waits to "selesai"; the (step, role)
/// pairs it waited on, in order, as `siaga ticket turn` showed them. A
/// letter ticket waits on the OPD (pemohon) at step 1; a detected one starts
/// at step 2, the detection being the request.
fn walk(o: &Office, id: &str) -> Result<Vec<(u64, String)>> {
    let mut turns = Vec::new();
    let mut turn = || -> Result<Value> {
        let t = o.turn(id)?;
        let step = t["step"].as_u64().unwrap_or_default();
        let role = t["role"].as_str().unwrap_or_default().to_string();
        turns.push((step, role));
        Ok(t)
    };
    let steps: [(&str, &[&str]); 5] = [
        ("opd", &["dispose", id]),
        ("kadis", &["dispose", id]),
        ("kabid", &["dispose", id, "--to", "prakom"]),
        ("prakom", &["dispose", id]),
        ("hd", &["dispose", id, "--to", "teknisi"]),
    ];
    for (who, args) in steps {
        if who == "opd" && o.turn(id)?["step"] != 1 {
            continue;
        }
        turn()?;
        // `siaga tickets` says whose turn it is and by when.
        let list = o.json("hd", &["tickets", "--json"])?;
        let row = list
            .as_array()
            .and_then(|t| t.iter().find(|t| t["id"] == id))
            .ok_or_else(|| anyhow!("{id} not in siaga tickets: {list}"))?;
        ensure!(
            row["due_at"].is_string() && json_bool(&row["overdue"]) == Some(false),
            "due_at/overdue of {id}: {row}"
        );
        if who == "prakom" {
            ensure!(row["assignee"] == "prakom", "assignee of {id}: {row}");
        }
        let mut all = vec!["ticket"];
        all.extend_from_slice(args);
        o.ok(who, &all)?;
    }
    turn()?;
    o.ok(
        "teknisi",
        &["ticket", "update", id, "--status", "diperiksa"],
    )?;
    o.ok(
        "opd",
        &["ticket", "acknowledge", id, "--by", "Andi, Kasubag Umum"],
    )?;
    o.ok(
        "teknisi",
        &[
            "ticket",
            "dispose",
            id,
            "--no-measurement-reason",
            "uji rantai SOP",
        ],
    )?;
    for who in ["hd", "prakom", "kabid", "sekdis"] {
        turn()?;
        o.ok(who, &["ticket", "dispose", id])?;
    }
    let last = turn()?;
    ensure!(
        last["step"] == 10 && last["closed_at"].is_string(),
        "{id} did not reach selesai: {last}"
    );
    Ok(turns)
}

#[test]
fn a_detected_and_a_letter_ticket_go_through_the_same_chain() -> Result<()> {
    let lab = Lab::new()?.device("rtr").start()?;
    let addr = lab.addr("rtr")?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n\n\
         [[device]]\nid = \"dinkes-rtr\"\nopd = \"dinkes\"\nkind = \"router\"\n\
         address = \"{addr}\"\n"
    ))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let o = Office::serve(c, &office_users_but(&["root"]))?;
    let _agent = Agent::start(agent_cfg)?;
    let hd = o.user("hd")?;
    wait_device_up(hd, "dinkes-rtr")?;

    lab.set_loss("rtr", 100)?;
    let detected = wait_for_ticket(hd, "a detected ticket", |t| t["origin"] == "detected")?;
    let detected = detected["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no detected ticket"))?
        .to_string();

    let letter = o.new_letter(
        "005/77/DINKES/XI/2026",
        &siaga_tests::office::letter_date(),
        "Jaringan lantai 2 putus",
        &["--device", "dinkes-rtr"],
    )?;
    ensure!(letter != detected, "two tickets: {letter} {detected}");

    // The detected ticket waits on the Kepala Dinas: the system did step 1
    // with the evidence, and the audit trail says so.
    let trail = o.json("hd", &["ticket", "audit", &detected, "--json"])?;
    ensure!(
        trail.as_array().map_or(0, Vec::len) >= 2
            && trail[1]["event"]["kind"] == "disposed"
            && trail[1]["event"]["user"] == "siaga"
            && trail[1]["event"]["step"] == 1,
        "step 1 of {detected} done by the system: {trail:#?}"
    );
    let kadis_inbox = o.json("kadis", &["inbox", "--json"])?;
    ensure!(
        kadis_inbox
            .as_array()
            .is_some_and(|i| i.iter().any(|t| t["ticket"]["id"] == detected.as_str())),
        "the Kepala Dinas's inbox holds {detected}: {kadis_inbox}"
    );
    let a = walk(&o, &detected)?;
    let b = walk(&o, &letter)?;
    ensure!(
        b.first() == Some(&(1, "pemohon".to_string())) && b.len() == 11,
        "{b:?}"
    );
    ensure!(
        a.as_slice() == &b[1..],
        "the same chain from step 2 for both:\ndetected {a:?}\nletter   {b:?}"
    );

    // Both control cards carry the whole chain; only the origin differs.
    for id in [&detected, &letter] {
        let card = o.ok("hd", &["ticket", "card", id])?;
        for words in [
            "Langkah 1",
            "Langkah 6",
            "Langkah 8a",
            "Langkah 8b",
            "Selesai pada",
        ] {
            ensure!(card.contains(words), "{id}: card lacks {words:?}:\n{card}");
        }
    }
    let list = hd.json(&["tickets", "--json"])?;
    let origin = |id: &str| {
        list.as_array()
            .and_then(|t| t.iter().find(|t| t["id"] == id))
            .map(|t| t["origin"].clone())
    };
    ensure!(
        origin(&detected) == Some(Value::from("detected"))
            && origin(&letter) == Some(Value::from("letter")),
        "{list:#}"
    );
    lab.set_loss("rtr", 0)?;
    Ok(())
}
