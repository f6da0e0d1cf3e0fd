//! A detected ticket and a letter ticket go through the same SOP chain:
//! a real device in a network namespace loses every packet, the collector
//! opens the ticket by itself, and the same seven people walk both tickets
//! through all ten steps with the `siaga` CLI. Needs root (namespaces, ICMP).

use anyhow::{Result, anyhow, bail, ensure};
use serde_json::Value;
use siaga_tests::harness::{Agent, Collector, Siaga, secs, wait_until};
use siaga_tests::lab::Lab;

const USERS: [(&str, &str); 7] = [
    ("opd", "pemohon"),
    ("kadis", "kepala_dinas"),
    ("kabid", "kabid_aptika"),
    ("prakom", "pranata_komputer"),
    ("hd", "helpdesk"),
    ("teknisi", "tim_teknis"),
    ("sekdis", "sekretaris_dinas"),
];

fn user<'a>(users: &'a [(&str, Siaga)], name: &str) -> Result<&'a Siaga> {
    users
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s)
        .ok_or_else(|| anyhow!("no user {name}"))
}

fn ok(users: &[(&str, Siaga)], who: &str, args: &[&str]) -> Result<String> {
    let out = user(users, who)?.run(args)?;
    if !out.status.success() {
        bail!(
            "{who}: siaga {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Walks one ticket from step 1 to "selesai"; the (step, role) pairs it
/// waited on, in order, as `siaga ticket turn` showed them.
fn walk(users: &[(&str, Siaga)], id: &str) -> Result<Vec<(u64, String)>> {
    let mut turns = Vec::new();
    let mut turn = |users: &[(&str, Siaga)]| -> Result<Value> {
        let t = user(users, "hd")?.json(&["ticket", "turn", id, "--json"])?;
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
        turn(users)?;
        // `siaga tickets` says whose turn it is and by when.
        let list = user(users, "hd")?.json(&["tickets", "--json"])?;
        let row = list
            .as_array()
            .and_then(|t| t.iter().find(|t| t["id"] == id))
            .ok_or_else(|| anyhow!("{id} not in siaga tickets: {list}"))?;
        ensure!(
            row["due_at"].is_string() && row["overdue"] == false,
            "due_at/overdue of {id}: {row}"
        );
        if who == "prakom" {
            ensure!(row["assignee"] == "prakom", "assignee of {id}: {row}");
        }
        let mut all = vec!["ticket"];
        all.extend_from_slice(args);
        ok(users, who, &all)?;
    }
    turn(users)?;
    ok(
        users,
        "teknisi",
        &["ticket", "update", id, "--status", "diperiksa"],
    )?;
    ok(
        users,
        "opd",
        &["ticket", "acknowledge", id, "--by", "Andi, Kasubag Umum"],
    )?;
    ok(
        users,
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
        turn(users)?;
        ok(users, who, &["ticket", "dispose", id])?;
    }
    let last = turn(users)?;
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
    let mut users = Vec::new();
    for (name, role) in USERS {
        users.push((name, c.enroll_user(name, role)?));
    }
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    let hd = user(&users, "hd")?;
    wait_until(secs(60), "dinkes-rtr up", || {
        Ok(hd
            .devices()?
            .iter()
            .any(|d| d["id"] == "dinkes-rtr" && d["state"] == "up"))
    })?;

    lab.set_loss("rtr", 100)?;
    wait_until(secs(60), "a detected ticket", || {
        Ok(hd
            .json(&["tickets", "--json"])?
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["origin"] == "detected")))
    })?;
    let detected = hd.json(&["tickets", "--json"])?;
    let detected = detected
        .as_array()
        .and_then(|t| t.iter().find(|t| t["origin"] == "detected"))
        .and_then(|t| t["id"].as_str())
        .ok_or_else(|| anyhow!("no detected ticket"))?
        .to_string();

    let out = ok(
        &users,
        "hd",
        &[
            "ticket",
            "new",
            "--opd",
            "dinkes",
            "--letter-number",
            "005/77/DINKES/XI/2026",
            "--letter-date",
            "2026-11-20",
            "--subject",
            "Jaringan lantai 2 putus",
            "--device",
            "dinkes-rtr",
        ],
    )?;
    let letter = out
        .strip_prefix("opened ")
        .and_then(|r| r.split(':').next())
        .ok_or_else(|| anyhow!("unexpected output of ticket new: {out}"))?
        .to_string();
    ensure!(letter != detected, "two tickets: {letter} {detected}");

    let a = walk(&users, &detected)?;
    let b = walk(&users, &letter)?;
    ensure!(
        a == b,
        "the same chain for both:\ndetected {a:?}\nletter   {b:?}"
    );
    ensure!(
        a.first() == Some(&(1, "pemohon".to_string())) && a.len() == 11,
        "{a:?}"
    );

    // Both control cards carry the whole chain; only the origin differs.
    for id in [&detected, &letter] {
        let card = ok(&users, "hd", &["ticket", "card", id])?;
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
