//! The monthly availability report end to end: a real collector and agent,
//! two switches in network namespaces, one of them cut off for a while;
//! `siaga report availability` for the month shows that switch's outage
//! and a lower availability than its neighbour's, in the table, the JSON
//! and the PDF. Needs root (network namespaces, raw sockets).

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use siaga_tests::harness::{Agent, Collector, device_state, secs, wait_until};
use siaga_tests::lab::Lab;

/// A device's row of the JSON answer: (incidents, availability %).
fn row(a: &Value, device: &str) -> Result<(u64, f64)> {
    let r = a["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["device"] == device && r["link"].as_str().unwrap_or_default().is_empty())
        .with_context(|| format!("no row of {device} in {a:#}"))?;
    let f = &r["figures"];
    Ok((
        f["incidents"].as_u64().unwrap_or(0),
        f["availability_pct"]
            .as_f64()
            .with_context(|| format!("no availability of {device}: {r:#}"))?,
    ))
}

#[test]
fn a_switch_cut_off_in_the_lab_shows_its_outage_in_the_months_availability() -> Result<()> {
    let lab = Lab::new()?.device("sw1").device("sw2").start()?;
    let mut c = Collector::init()?;
    let mut inv =
        "interval = \"1s\"\n\n[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n".to_string();
    for sw in ["sw1", "sw2"] {
        inv.push_str(&format!(
            "\n[[device]]\nid = \"dinkes-{sw}\"\nopd = \"dinkes\"\nkind = \"switch\"\naddress = \"{}\"\n",
            lab.addr(sw)?
        ));
    }
    c.write_inventory_text(&inv)?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("kabid", "kabid_aptika")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "both switches up", || {
        Ok(device_state(&siaga, "dinkes-sw1")? == "up"
            && device_state(&siaga, "dinkes-sw2")? == "up")
    })?;

    // sw1's cable goes dead, then comes back.
    lab.set_link_down("sw1", "eth0")?;
    wait_until(secs(60), "sw1 down", || {
        Ok(device_state(&siaga, "dinkes-sw1")? == "down")
    })?;
    lab.set_link_up("sw1", "eth0")?;
    wait_until(secs(60), "sw1 up again", || {
        Ok(device_state(&siaga, "dinkes-sw1")? == "up")
    })?;

    // The month of the province's time zone (WIB) that holds now.
    let month = (chrono::Utc::now() + chrono::Duration::hours(7))
        .format("%Y-%m")
        .to_string();
    let a = siaga.json(&["report", "availability", "--period", &month, "--json"])?;
    let (sw1_incidents, sw1) = row(&a, "dinkes-sw1")?;
    let (sw2_incidents, sw2) = row(&a, "dinkes-sw2")?;
    ensure!(
        sw1_incidents == 1 && sw2_incidents == 0,
        "one incident of sw1, none of sw2: {a:#}"
    );
    ensure!(sw1 < sw2 && sw2 == 100.0, "sw1 {sw1} % below sw2 {sw2} %");

    // The table and the PDF say the same.
    let dir = tempfile::tempdir()?;
    let pdf = dir.path().join("ketersediaan.pdf");
    let pdf_arg = pdf.to_string_lossy().to_string();
    let out = siaga.run(&[
        "report",
        "availability",
        "--period",
        &month,
        "--pdf",
        &pdf_arg,
    ])?;
    ensure!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with("dinkes-sw1"))
        .with_context(|| format!("no sw1 line in\n{table}"))?;
    ensure!(
        line.split_whitespace().nth(1) == Some(format!("{sw1:.3}").as_str()),
        "the table's sw1 line {line:?} is not {sw1:.3} %"
    );
    ensure!(table.contains("wrote "), "{table}");
    let text = std::process::Command::new("pdftotext")
        .args(["-layout", &pdf_arg, "-"])
        .output()
        .context("pdftotext (poppler-utils)")?;
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    let pct = format!("{sw1:.3} %").replace('.', ",");
    ensure!(
        text.contains("LAPORAN KETERSEDIAAN JARINGAN")
            && text
                .lines()
                .any(|l| l.contains("dinkes-sw1") && l.contains(&pct)),
        "the PDF shows sw1 at {pct}:\n{text}"
    );
    Ok(())
}
