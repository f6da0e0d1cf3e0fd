//! Several collectors on one PostgreSQL share whom they trust: a
//! certificate revoked with one collector's directory is refused by every
//! collector (an agent streaming to another one is cut off and stays out; a
//! lost laptop gets in nowhere), and a person enrolled with one
//! collector's directory can use every collector.
//!
//! Real `siaga-collector`, `siaga-agent` and `siaga` processes, real mTLS, a
//! real PostgreSQL cluster. The second collector is a copy of the first
//! one's directory made BEFORE the enrolment and the revocations, so its
//! files know of neither: only the database can tell it. Build the
//! binaries first: `cargo build --workspace --bins`.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use siaga_tests::harness::*;
use siaga_tests::postgres::Cluster;

/// `siaga-collector revoke-cert --config <c's collector.toml> ARGS`, which must succeed.
fn revoke(c: &Collector, args: &[&str]) -> Result<String> {
    let mut all = vec!["revoke-cert", "--config", path_str(&c.config)?];
    all.extend_from_slice(args);
    let o = c.cmd(&all)?;
    ensure!(o.status.success(), "revoke-cert {args:?}: {}", text(&o));
    Ok(text(&o))
}

#[test]
fn a_revocation_or_an_enrolment_with_one_collectors_directory_holds_on_every_collector()
-> Result<()> {
    let pg = Cluster::start()?;
    let mut a = Collector::init()?;
    a.write_inventory(&Inventory::new("1s").opd("dinkes").device(
        "dinkes-sw",
        "dinkes",
        "127.0.0.1",
    ))?;
    set_toml(&a.config, "store.url", pg.url().into())?;
    let root = a.enroll_user("root", "admin")?;
    let dinkes = a.enroll_agent("dinkes")?;
    // The second collector: a copy of the first one's directory, now.
    let mut b = a.copy_as_another()?;
    dinkes.set("collector", toml::Value::Array(vec![b.url().into()]))?;
    dinkes.set("metrics_listen", "127.0.0.1:0")?;
    a.serve()?;
    b.serve()?;
    let root_b = root.on(&b)?;
    let mut agent = Agent::start(dinkes)?;
    wait_until(
        secs(60),
        "the agent streaming to the second collector",
        || Ok(agent_connected(&root_b, "dinkes-agent")? && root_b.history("dinkes-sw")?.len() >= 2),
    )
    .with_context(|| format!("agent log:\n{}", agent.log_tail(20)))?;

    // A person enrolled with the first collector's directory, after the
    // copy: the second one's users directory does not have them.
    let budi = a.enroll_user("budi", "helpdesk")?;
    ensure!(
        !b.dir().join("users").join("budi.toml").exists(),
        "the copy was made before budi's enrolment"
    );
    let budi_b = budi.on(&b)?;
    let enrolled = Instant::now();
    wait_until(secs(15), "budi let in by the second collector", || {
        Ok(budi_b.run(&["tickets"])?.status.success())
    })
    .with_context(|| {
        budi_b
            .run(&["tickets"])
            .map_or_else(|e| e.to_string(), |o| text(&o))
    })?;
    let whoami = text(&budi_b.run(&["whoami"])?);
    ensure!(whoami.contains("helpdesk"), "budi's role on B: {whoami}");
    println!(
        "a person enrolled on A used B {:.1} s after the enrolment",
        enrolled.elapsed().as_secs_f64()
    );

    // The agent's host is stolen: revoked with the FIRST collector's
    // directory. The second collector, where it streams, cuts it off.
    let start = Instant::now();
    revoke(&a, &["--agent", "dinkes-agent", "--reason", "host stolen"])?;
    wait_until(
        secs(10),
        "the second collector ending the agent's stream",
        || {
            Ok(b.log_tail(300)
                .contains("certificate revoked; ending its open stream"))
        },
    )
    .with_context(|| format!("collector B's log:\n{}", b.log_tail(30)))?;
    let cut = start.elapsed();
    println!(
        "revoked on A: the agent's open stream on B ended {:.2} s later",
        cut.as_secs_f64()
    );
    ensure!(
        cut.as_secs_f64() < 5.0,
        "{:.1} s to end the stream",
        cut.as_secs_f64()
    );
    // It stays out: its reconnects are refused, its samples stop.
    wait_until(secs(15), "the agent's reconnect refused by B", || {
        Ok(b.log_tail(400).contains("revoked certificate refused"))
    })
    .with_context(|| format!("collector B's log:\n{}", b.log_tail(30)))?;
    ensure!(
        !agent_connected(&root_b, "dinkes-agent")?,
        "the revoked agent got back in"
    );
    let before = root_b.history("dinkes-sw")?.len();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let after = root_b.history("dinkes-sw")?.len();
    ensure!(
        after == before,
        "the revoked agent stored {} samples after its cut-off",
        after - before
    );

    // budi's laptop is lost: revoked on the first collector, refused by both.
    let said = revoke(&a, &["--name", "budi", "--reason", "laptop hilang"])?;
    ensure!(said.contains("siaga://user/budi"), "{said}");
    wait_until(secs(10), "budi refused by the second collector", || {
        let o = budi_b.run(&["whoami"])?;
        Ok(!o.status.success() && text(&o).contains("revoked"))
    })?;
    let o = budi.run(&["whoami"])?;
    ensure!(
        !o.status.success() && text(&o).contains("revoked"),
        "budi on the first collector: {}",
        text(&o)
    );
    ensure!(
        root_b.run(&["whoami"])?.status.success(),
        "root still works on B"
    );

    // The second collector's `certs` lists budi's certificate, issued and
    // revoked with the other directory.
    let o = b.cmd(&["certs", "--config", path_str(&b.config)?, "--json"])?;
    ensure!(o.status.success(), "certs: {}", text(&o));
    let listed: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| l.to_string()))
        .collect::<Result<_>>()?;
    let budi_cert = listed
        .iter()
        .find(|e| e["kind"] == "user" && e["name"] == "budi")
        .with_context(|| format!("budi in B's certs: {listed:?}"))?;
    ensure!(budi_cert["revoked"] == Value::Bool(true), "{budi_cert}");

    agent.stop();
    ensure!(a.stop() && b.stop(), "the collectors did not stop cleanly");
    Ok(())
}
