//! The OPD scope end to end: a requester (`pemohon`) of one OPD neither
//! sees nor acts on another OPD's tickets, devices, links, agents, events or
//! samples — a listing leaves them out, a request for one answers as for a
//! missing one — while the province's helpdesk sees both OPDs.

use anyhow::{Result, anyhow, ensure};
use serde_json::Value;
use siaga_tests::harness::Collector;
use siaga_tests::office::{OFFICE_OPD, Office};

/// The other OPD, whose things the requester of [`OFFICE_OPD`] must not see.
const OTHER: &str = "dishub";

/// Two OPDs, each with a switch (loopback, nothing probes it) and a link on it.
fn inventory() -> String {
    let mut s = String::from("interval = \"10s\"\n");
    for opd in [OFFICE_OPD, OTHER] {
        s.push_str(&format!(
            "\n[[opd]]\nid = \"{opd}\"\nname = \"OPD {opd}\"\n"
        ));
    }
    for (opd, addr) in [(OFFICE_OPD, "127.0.0.1"), (OTHER, "127.0.0.2")] {
        s.push_str(&format!(
            "\n[[device]]\nid = \"{opd}-sw1\"\nopd = \"{opd}\"\nkind = \"switch\"\n\
             address = \"{addr}\"\n\n[device.snmp]\nversion = \"2c\"\ncommunity = \"public\"\n\
             \n[[link]]\ndevice = \"{opd}-sw1\"\ninterface = \"port2\"\nname = \"{opd}-uplink\"\n"
        ));
    }
    s
}

fn array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(anyhow!("not an array: {other}")),
    }
}

/// The OPDs of the items of `siaga ARGS --json` as `who`, sorted, unique.
fn opds(o: &Office, who: &str, args: &[&str], field: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = array(o.json(who, args)?)?
        .iter()
        .filter_map(|i| i[field].as_str().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// A letter ticket for `opd`, entered by the helpdesk; its number.
fn letter(o: &Office, opd: &str, number: &str) -> Result<String> {
    let out = o.ok(
        "hd",
        &[
            "ticket",
            "new",
            "--opd",
            opd,
            "--letter-number",
            number,
            "--letter-date",
            &siaga_tests::office::letter_date(),
            "--subject",
            "Internet putus",
        ],
    )?;
    siaga_tests::office::opened_ticket(&out)
}

/// `siaga ARGS` as the requester fails as for a missing object: NOT_FOUND,
/// the same words as for `missing_args`, and never PERMISSION_DENIED.
fn hidden(
    o: &Office,
    args: &[&str],
    missing_args: &[&str],
    hidden_id: &str,
    missing_id: &str,
) -> Result<()> {
    let got = o.user("opd")?.run(args)?;
    let missing = o.user("opd")?.run(missing_args)?;
    ensure!(
        !got.status.success(),
        "siaga {args:?} should not find another OPD's object"
    );
    let err = String::from_utf8_lossy(&got.stderr).trim().to_string();
    let err_missing = String::from_utf8_lossy(&missing.stderr).trim().to_string();
    ensure!(
        got.status.code() == missing.status.code(),
        "siaga {args:?} exits {:?} ({err}) but {:?} for a missing object ({err_missing})",
        got.status.code(),
        missing.status.code()
    );
    ensure!(
        err.replace(hidden_id, "ID") == err_missing.replace(missing_id, "ID"),
        "another OPD's object and a missing one answer differently:\n  {err}\n  {err_missing}"
    );
    ensure!(
        // (The id asked about may itself hold the OPD's name.)
        !err.to_ascii_lowercase().contains("permission")
            && !err.replace(hidden_id, "ID").contains(OTHER),
        "the refusal confirms the object exists: {err}"
    );
    Ok(())
}

#[test]
fn a_requester_sees_and_acts_only_on_the_own_opd() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory_text(&inventory())?;
    c.enroll_agent(OFFICE_OPD)?;
    c.enroll_agent(OTHER)?;
    let o = Office::serve(c, &[("opd", "pemohon"), ("hd", "helpdesk")])?;
    let own = letter(&o, OFFICE_OPD, "005/1/DINKES/XI/2026")?;
    let other = letter(&o, OTHER, "007/2/DISHUB/XI/2026")?;
    let own_dev = format!("{OFFICE_OPD}-sw1");
    let other_dev = format!("{OTHER}-sw1");
    let both = {
        let mut v = vec![OTHER.to_string(), OFFICE_OPD.to_string()];
        v.sort();
        v
    };

    // Listings: the helpdesk sees both OPDs, the requester only its own.
    for (args, field) in [
        (&["tickets", "--json"][..], "opd"),
        (&["devices", "--json"][..], "opd"),
        (&["agents", "--json"][..], "opd"),
    ] {
        ensure!(
            opds(&o, "hd", args, field)? == both,
            "helpdesk: siaga {args:?}"
        );
        ensure!(
            opds(&o, "opd", args, field)? == [OFFICE_OPD],
            "requester: siaga {args:?} shows {:?}",
            opds(&o, "opd", args, field)?
        );
    }
    // The inbox: both letters wait on a pemohon (step 1), the requester's
    // holds only the own OPD's.
    let inbox = |who| -> Result<Vec<String>> {
        Ok(array(o.json(who, &["inbox", "--json"])?)?
            .iter()
            .filter_map(|i| i["ticket"]["id"].as_str().map(str::to_string))
            .collect())
    };
    ensure!(
        inbox("opd")? == [own.clone()],
        "requester's inbox: {:?}",
        inbox("opd")?
    );
    let links = |who| -> Result<Vec<String>> { opds(&o, who, &["links", "--json"], "device") };
    ensure!(
        links("hd")? == [own_dev.clone(), other_dev.clone()],
        "helpdesk links: {:?}",
        links("hd")?
    );
    ensure!(
        links("opd")? == [own_dev.clone()],
        "requester links: {:?}",
        links("opd")?
    );
    let events = opds(&o, "opd", &["events", "--since", "1h", "--json"], "opd")?;
    ensure!(
        events.iter().all(|e| e == OFFICE_OPD),
        "requester events: {events:?}"
    );

    // The own OPD's objects answer.
    let t = o.json("opd", &["ticket", "show", &own, "--json"])?;
    ensure!(t["ticket"]["id"] == own.as_str(), "{t}");
    let d = o.json("opd", &["device", &own_dev, "--json"])?;
    ensure!(d["id"] == own_dev.as_str(), "{d}");
    o.json("opd", &["history", &own_dev, "--since", "1h", "--json"])?;
    // The helpdesk reads the other OPD's.
    let t = o.json("hd", &["ticket", "show", &other, "--json"])?;
    ensure!(t["ticket"]["id"] == other.as_str(), "{t}");
    o.json("hd", &["device", &other_dev, "--json"])?;
    o.json("hd", &["history", &other_dev, "--since", "1h", "--json"])?;

    // The other OPD's answer as missing ones do.
    let nt = "PJ-2026-9999";
    hidden(
        &o,
        &["ticket", "show", &other],
        &["ticket", "show", nt],
        &other,
        nt,
    )?;
    hidden(
        &o,
        &["ticket", "turn", &other],
        &["ticket", "turn", nt],
        &other,
        nt,
    )?;
    hidden(
        &o,
        &["ticket", "audit", &other],
        &["ticket", "audit", nt],
        &other,
        nt,
    )?;
    hidden(
        &o,
        &["ticket", "dispose", &other, "--note", "x"],
        &["ticket", "dispose", nt, "--note", "x"],
        &other,
        nt,
    )?;
    let nd = "nowhere-sw9";
    hidden(&o, &["device", &other_dev], &["device", nd], &other_dev, nd)?;
    hidden(
        &o,
        &["history", &other_dev, "--since", "1h"],
        &["history", nd, "--since", "1h"],
        &other_dev,
        nd,
    )?;

    // Documents: the card and the report of another OPD's ticket answer as
    // missing ones do; the register holds the own OPD's tickets only.
    hidden(
        &o,
        &["ticket", "card", &other],
        &["ticket", "card", nt],
        &other,
        nt,
    )?;
    let out = o.file("report.html");
    let out = out.to_str().ok_or_else(|| anyhow!("path"))?;
    hidden(
        &o,
        &["ticket", "report", &other, "--format", "html", "--out", out],
        &["ticket", "report", nt, "--format", "html", "--out", out],
        &other,
        nt,
    )?;
    let card = o.ok("opd", &["ticket", "card", &own])?;
    ensure!(card.contains(&own), "{card}");
    let day = siaga_tests::office::letter_date();
    let register = |who| o.ok(who, &["register", "--from", &day, "--to", &day]);
    let mine = register("opd")?;
    ensure!(
        mine.contains(&own) && !mine.contains(&other),
        "the requester's register holds the own OPD's tickets only:\n{mine}"
    );
    let all = register("hd")?;
    ensure!(
        all.contains(&own) && all.contains(&other),
        "the helpdesk's register holds both OPDs':\n{all}"
    );
    let only = o.ok(
        "hd",
        &["register", "--from", &day, "--to", &day, "--opd", OTHER],
    )?;
    ensure!(
        only.contains(&other) && !only.contains(&own),
        "--opd {OTHER}:\n{only}"
    );

    // Acting on the own OPD's ticket still works; the other's did not move.
    o.ok(
        "opd",
        &["ticket", "dispose", &own, "--note", "mohon ditindaklanjuti"],
    )?;
    let t = o.json("hd", &["ticket", "show", &other, "--json"])?;
    ensure!(
        t["ticket"]["step"] == 1,
        "the other OPD's ticket moved: {t}"
    );
    Ok(())
}
