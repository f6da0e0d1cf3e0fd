//! The letter desk, the frozen work report and the signed audit heads with
//! two collectors on one PostgreSQL (issue 16): a letter filed on both at
//! once, or on one after the other, is one ticket; a ticket walked on both
//! is frozen once and gives the same report on both; `siaga-collector
//! verify` on each collector's directory finds every trail anchored, also
//! the steps the other collector wrote.
//!
//! Real `siaga-collector` and `siaga` processes, real mTLS, a real
//! PostgreSQL cluster. Build the binaries first: `cargo build --workspace
//! --bins`.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, ensure};
use siaga_tests::harness::*;
use siaga_tests::office::{OFFICE_OPD, OFFICE_USERS, letter_args, letter_date};
use siaga_tests::postgres::Cluster;

/// Two collectors on one database, each user's `siaga` on each.
struct Pair {
    _pg: Cluster,
    a: Collector,
    b: Collector,
    on_a: HashMap<&'static str, Siaga>,
    on_b: HashMap<&'static str, Siaga>,
}

impl Pair {
    fn start() -> Result<Pair> {
        let pg = Cluster::start()?;
        let mut a = Collector::init()?;
        a.write_inventory(&Inventory::new("10s").opd(OFFICE_OPD))?;
        set_toml(&a.config, "store.url", pg.url().into())?;
        let mut on_a = HashMap::new();
        for (name, role) in OFFICE_USERS {
            let extra: &[&str] = if role == "pemohon" {
                &["--opd", OFFICE_OPD]
            } else {
                &[]
            };
            on_a.insert(name, a.enroll_user_with(name, role, extra)?);
        }
        let mut b = a.copy_as_another()?;
        a.serve()?;
        b.serve()?;
        let mut on_b = HashMap::new();
        for (name, s) in &on_a {
            on_b.insert(*name, s.on(&b)?);
        }
        Ok(Pair {
            _pg: pg,
            a,
            b,
            on_a,
            on_b,
        })
    }

    /// `siaga` of `who` on the first collector (`first`) or the second.
    fn user(&self, first: bool, who: &str) -> Result<&Siaga> {
        let users = if first { &self.on_a } else { &self.on_b };
        users.get(who).ok_or_else(|| anyhow!("no user {who}"))
    }

    /// `siaga <args>` as `who` on one of the two; must succeed.
    fn ok(&self, first: bool, who: &str, args: &[&str]) -> Result<String> {
        let o = self.user(first, who)?.run(args)?;
        let c = if first { &self.a } else { &self.b };
        ensure!(
            o.status.success(),
            "{who}: siaga {args:?}: {}\ncollector log:\n{}",
            text(&o),
            c.log_tail(20)
        );
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}

/// The helpdesk files letter `number` on one collector: (ticket, already filed).
fn file(s: &Siaga, number: &str) -> Result<(String, bool)> {
    let date = letter_date();
    let mut args = letter_args(number, &date, "Internet ruang rapat putus");
    args.push("--json");
    let v = s.json(&args)?;
    let id = v["ticket"]["id"]
        .as_str()
        .with_context(|| format!("no ticket in {v}"))?;
    Ok((id.to_string(), v["already_filed"] == true))
}

/// The tickets `siaga tickets --json` lists, by number.
fn tickets(s: &Siaga) -> Result<std::collections::BTreeSet<String>> {
    Ok(s.json(&["tickets", "--json"])?
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .collect())
}

#[test]
fn letters_frozen_reports_and_signed_heads_are_one_across_two_collectors() -> Result<()> {
    let p = Pair::start()?;
    let (hd_a, hd_b) = (p.user(true, "hd")?, p.user(false, "hd")?);

    // One after the other: a letter filed on the first is found on the
    // second, also after the second has filed letters of its own.
    let (own, again) = file(hd_b, "005/1/DINKES/2026")?;
    ensure!(!again, "a new letter filed as a duplicate");
    let mut filed = std::collections::BTreeSet::from([own.clone()]);
    let (first, _) = file(hd_a, "005/2/DINKES/2026")?;
    filed.insert(first.clone());
    let (second, again) = file(hd_b, " 005/2/dinkes/2026 ")?;
    ensure!(
        again && second == first,
        "filed on the first as {first}, on the second as {second}"
    );
    // At the same moment, on both.
    for n in 3..8 {
        let number = format!("005/{n}/DINKES/2026");
        let (x, y) = std::thread::scope(|s| {
            let x = s.spawn(|| file(hd_a, &number));
            let y = s.spawn(|| file(hd_b, &number));
            (x.join(), y.join())
        });
        let (x, y) = (
            x.map_err(|_| anyhow!("panicked"))??,
            y.map_err(|_| anyhow!("panicked"))??,
        );
        ensure!(
            x.0 == y.0 && x.1 != y.1,
            "letter {number}: {x:?} on the first, {y:?} on the second"
        );
        filed.insert(x.0);
    }
    // Seven letters, seven tickets, on both.
    ensure!(filed.len() == 7, "{filed:?}");
    for s in [hd_a, hd_b] {
        let listed = tickets(s)?;
        ensure!(listed == filed, "listed {listed:?}, filed {filed:?}");
    }

    // A ticket walked on both, each step on the other collector than the one before.
    let id = own;
    let steps: [(&str, Vec<&str>); 12] = [
        (
            "opd",
            vec!["dispose", &id, "--note", "mohon ditindaklanjuti"],
        ),
        ("kadis", vec!["dispose", &id]),
        ("kabid", vec!["dispose", &id, "--to", "prakom"]),
        ("prakom", vec!["dispose", &id]),
        ("hd", vec!["dispose", &id, "--to", "teknisi"]),
        ("teknisi", vec!["update", &id, "--status", "menuju lokasi"]),
        (
            "opd",
            vec!["acknowledge", &id, "--by", "Andi, Kasubag Umum"],
        ),
        (
            "teknisi",
            vec![
                "dispose",
                &id,
                "--no-measurement-reason",
                "perangkat mati total",
            ],
        ),
        ("hd", vec!["dispose", &id]),
        ("prakom", vec!["dispose", &id]),
        ("kabid", vec!["dispose", &id]),
        // The review: it freezes the work report.
        ("kadis", vec!["dispose", &id]),
    ];
    let last = steps.len() - 1;
    for (i, (who, args)) in steps.iter().enumerate() {
        let mut all = vec!["ticket"];
        all.extend_from_slice(args);
        if i < last {
            p.ok(i % 2 == 0, who, &all)?;
            continue;
        }
        // The review on the second, while the first is asked for the
        // report: both may find it due to be frozen at once.
        let out = p.user(true, "hd")?;
        let path = p.a.root().join("asked.pdf");
        let path = path.to_string_lossy();
        let report = ["ticket", "report", &id, "--format", "pdf", "--out", &path];
        std::thread::scope(|s| -> Result<()> {
            let asking = s.spawn(|| {
                for _ in 0..20 {
                    let _ = out.run(&report);
                }
            });
            p.ok(false, who, &all)?;
            asking.join().map_err(|_| anyhow!("panicked"))?;
            Ok(())
        })?;
    }
    let trail = p
        .user(true, "hd")?
        .json(&["ticket", "audit", &id, "--json"])?;
    let trail = trail.as_array().cloned().unwrap_or_default();
    let frozen = trail
        .iter()
        .filter(|r| r.to_string().contains("report_frozen"))
        .count();
    ensure!(frozen == 1, "{frozen} report_frozen records:\n{trail:?}");
    let mut reports = Vec::new();
    for (first, c) in [(true, &p.a), (false, &p.b)] {
        let path = c.root().join("laporan.pdf");
        let path_s = path.to_string_lossy();
        p.ok(
            first,
            "hd",
            &["ticket", "report", &id, "--format", "pdf", "--out", &path_s],
        )?;
        reports.push(std::fs::read(&path)?);
    }
    ensure!(
        reports[0].starts_with(b"%PDF-") && reports[0] == reports[1],
        "the two collectors give other bytes of the frozen report"
    );

    // Every trail anchored, on each collector's directory: the heads the
    // other collector signed are in the database.
    let mut a = p.a;
    let mut b = p.b;
    ensure!(a.stop() && b.stop(), "a collector did not stop cleanly");
    for c in [&a, &b] {
        let v = c.cmd(&["verify", "--config", &c.config.to_string_lossy()])?;
        let out = text(&v);
        eprintln!("verify on {}:\n{out}", c.url());
        ensure!(v.status.success(), "verify on {}:\n{out}", c.url());
        ensure!(
            out.contains("7 audit trails intact (7 checked against their signed heads)"),
            "verify on {}:\n{out}",
            c.url()
        );
    }
    Ok(())
}
