//! Several collectors on one PostgreSQL (issue 16): the same device state
//! from every collector. Two collectors on one database, one real agent
//! streaming to the first, which holds its OPD's lease and judges it; the
//! test cuts a lab device's cable and mends it. `siaga devices`, `siaga
//! device` and the `siaga_device_state` gauge of /metrics asked on the
//! SECOND collector, which drops the OPD's samples for health, show what
//! the first one judged, within a few seconds of it.
//!
//! Real `siaga-collector`, `siaga-agent` and `siaga` processes, real mTLS,
//! a real PostgreSQL cluster, ICMP to the lab's namespaces. Build the
//! binaries first: `cargo build --workspace --bins`.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use siaga_tests::harness::*;
use siaga_tests::lab::Lab;
use siaga_tests::postgres::Cluster;

const SW1: &str = "dinkes-sw1";

/// The state `siaga device DEVICE --json` shows.
fn shown(who: &Siaga, device: &str) -> Result<String> {
    let d = who.json(&["device", device, "--json"])?;
    Ok(d["state"].as_str().unwrap_or_default().to_string())
}

/// The state whose `siaga_device_state` series of `device` is 1 on the
/// collector whose /metrics listens at `addr`.
fn gauge(addr: &str, device: &str) -> Result<String> {
    let text = http_get(addr, "/metrics")?;
    let labels = format!("siaga_device_state{{opd=\"dinkes\",device=\"{device}\",state=\"");
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix(&labels))
        .find_map(|rest| {
            let (state, value) = rest.split_once("\"} ")?;
            (value.trim() == "1").then(|| state.to_string())
        })
        .unwrap_or_default())
}

/// Whether collector `c` holds `opd`'s lease.
fn holds(pg: &Cluster, c: &Collector, opd: &str) -> Result<bool> {
    let holder = pg.sql(&format!("SELECT holder FROM leases WHERE opd = '{opd}'"))?;
    Ok(holder.trim().contains(&format!("/{}/", c.listen)))
}

fn metrics_addr(c: &Collector) -> Result<String> {
    let path = c.data_dir.join("metrics.addr");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("{}", path.display()))?
        .trim()
        .to_string())
}

#[test]
fn a_device_cut_off_shows_down_then_up_on_the_collector_that_does_not_judge_it() -> Result<()> {
    let lab = Lab::new()?.device("sw1").device("sw2").start()?;
    let pg = Cluster::start()?;
    let mut a = Collector::init()?;
    a.write_inventory(
        &Inventory::new("1s")
            .opd("dinkes")
            .device(SW1, "dinkes", &lab.addr("sw1")?.to_string())
            .device("dinkes-sw2", "dinkes", &lab.addr("sw2")?.to_string()),
    )?;
    set_toml(&a.config, "store.url", pg.url().into())?;
    set_toml(&a.config, "metrics_listen", "127.0.0.1:0".into())?;
    let root = a.enroll_user("root", "admin")?;
    let cfg = a.enroll_agent("dinkes")?;
    let mut b = a.copy_as_another()?;
    cfg.set(
        "collector",
        toml::Value::Array(vec![a.url().into(), b.url().into()]),
    )?;
    cfg.set("interval", "1s")?;
    a.serve()?;
    b.serve()?;
    let _agent = Agent::start(cfg)?;
    let root_b = root.on(&b)?;
    let (metrics_a, metrics_b) = (metrics_addr(&a)?, metrics_addr(&b)?);

    // The first collector judges dinkes; the second shows what it judged.
    wait_until(secs(60), "dinkes' lease on the first collector", || {
        holds(&pg, &a, "dinkes")
    })?;
    wait_until(secs(60), "sw1 up on the first collector", || {
        Ok(device_state(&root, SW1)? == "up")
    })?;
    wait_until(secs(10), "sw1 up on the second collector", || {
        Ok(device_state(&root_b, SW1)? == "up")
    })
    .with_context(|| format!("the second shows {:?}", device_state(&root_b, SW1)))?;
    ensure!(
        !holds(&pg, &b, "dinkes")?,
        "the second collector took dinkes' lease"
    );
    // `siaga agents` says the same on both: connected (to the first),
    // with the figures of its newest heartbeat.
    for who in [&root, &root_b] {
        wait_until(secs(10), "the agent listed connected", || {
            let v = who.json(&["agents", "--json"])?;
            Ok(v.as_array().is_some_and(|a| {
                a.iter().any(|r| {
                    r["opd"] == "dinkes"
                        && r["status"] == "connected"
                        && r["spool_depth"].is_number()
                })
            }))
        })
        .with_context(|| format!("{:?}", who.json(&["agents", "--json"])))?;
    }

    // sw1's cable cut: down on the first, then within a few seconds on the
    // second, in each of its views.
    lab.set_link_down("sw1", "eth0")?;
    wait_until(secs(30), "sw1 down on the first collector", || {
        Ok(device_state(&root, SW1)? == "down")
    })?;
    let down_on_a = Instant::now();
    wait_until(secs(5), "sw1 down on the second collector", || {
        Ok(device_state(&root_b, SW1)? == "down")
    })
    .with_context(|| format!("the second shows {:?}", device_state(&root_b, SW1)))?;
    eprintln!(
        "down on the second collector {:.1} s after the first",
        down_on_a.elapsed().as_secs_f64()
    );
    ensure!(
        shown(&root_b, SW1)? == "down",
        "siaga device on the second collector: {}",
        shown(&root_b, SW1)?
    );
    wait_until(secs(5), "the second collector's gauge down", || {
        Ok(gauge(&metrics_b, SW1)? == "down")
    })
    .with_context(|| format!("its gauge says {:?}", gauge(&metrics_b, SW1)))?;
    ensure!(
        gauge(&metrics_a, SW1)? == "down",
        "the first collector's gauge: {}",
        gauge(&metrics_a, SW1)?
    );
    ensure!(
        device_state(&root_b, "dinkes-sw2")? == "up",
        "sw2 on the second collector: {}",
        device_state(&root_b, "dinkes-sw2")?
    );

    // Mended: up on both.
    lab.set_link_up("sw1", "eth0")?;
    wait_until(secs(30), "sw1 up again on the first collector", || {
        Ok(device_state(&root, SW1)? == "up")
    })?;
    wait_until(secs(5), "sw1 up again on the second collector", || {
        Ok(device_state(&root_b, SW1)? == "up" && shown(&root_b, SW1)? == "up")
    })?;
    wait_until(secs(5), "the second collector's gauge up", || {
        Ok(gauge(&metrics_b, SW1)? == "up")
    })?;
    Ok(())
}
