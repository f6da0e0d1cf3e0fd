//! The agent's host clock steps (NTP) while it streams: an hour back, then
//! half a day forward, with a collector outage in between. The collector
//! refuses samples stamped further ahead than `[ingest] max_clock_skew`
//! (default 5 minutes; `tests/tests/trust.rs` checks that refusal): here it
//! allows a day, so the forward step shows in the stored sample times. The agent's wall
//! clock is shifted through its test-only offset file
//! (`SIAGA_TEST_CLOCK_OFFSET_FILE`, see `agent/src/clock.rs`); the host's
//! clock is left alone. Every sample must still arrive exactly once and in
//! sequence, acknowledgements keep flowing and the spool empties; the sample
//! times show the steps while the collector's receive times stay true.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use siaga_tests::harness::*;

const DEVICES: usize = 5;
const HOUR_US: i64 = 3_600_000_000;
const HALF_DAY_US: i64 = 12 * HOUR_US;
/// How far a sample's time may lie from its phase's offset (replays after
/// the outage arrive late by the outage's length).
const SLACK_US: i64 = 120_000_000;

fn device(i: usize) -> String {
    format!("dinkes-d{i}")
}

/// `(seq, ts_us, received_us)` of every stored sample, by seq.
fn stored(who: &Siaga) -> Result<BTreeMap<u64, (i64, i64)>> {
    let mut all = BTreeMap::new();
    for i in 1..=DEVICES {
        let rows = who.json(&["history", &device(i), "--since", "3650d", "--json"])?;
        for s in rows.as_array().context("history array")? {
            let seq = json_u64(&s["seq"]).context("seq")?;
            let ts = ts_us(&s["ts"]).context("ts")?;
            let received = ts_us(&s["received_at"]).with_context(|| format!("received_at: {s}"))?;
            ensure!(
                all.insert(seq, (ts, received)).is_none(),
                "seq {seq} stored twice"
            );
        }
    }
    Ok(all)
}

/// Samples stamped with the agent clock `offset_us` ahead of the collector's.
fn at_offset(all: &BTreeMap<u64, (i64, i64)>, offset_us: i64) -> usize {
    all.values()
        .filter(|(ts, rx)| (ts - rx - offset_us).abs() < SLACK_US)
        .count()
}

fn step_clock(file: &Path, offset_s: i64) -> Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{offset_s}\n"))?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

fn metric(agent: &Agent, name: &str) -> Result<f64> {
    metric_containing(&agent.metrics()?, name).with_context(|| format!("no metric {name}"))
}

#[test]
fn the_agent_clock_stepping_back_an_hour_and_forward_half_a_day_loses_and_doubles_nothing()
-> Result<()> {
    let started = now_us();
    let mut c = Collector::init()?;
    let mut inv = Inventory::new("1s").opd("dinkes");
    for i in 1..=DEVICES {
        inv = inv.device(&device(i), "dinkes", &format!("127.0.0.{i}"));
    }
    c.write_inventory(&inv)?;
    set_toml(
        &c.config,
        "ingest.max_clock_skew",
        toml::Value::String("1d".into()),
    )?;
    let root = c.enroll_user("root", "admin")?;
    c.serve()?;
    let cfg = c.enroll_agent("dinkes")?;
    cfg.set("metrics_listen", "127.0.0.1:0")?;
    let offset_file = c.root().join("clock-offset");
    step_clock(&offset_file, 0)?;
    let mut agent = Agent::start_with_env(
        cfg,
        &[(
            "SIAGA_TEST_CLOCK_OFFSET_FILE",
            offset_file.to_str().context("path")?,
        )],
    )?;
    let enough = 3 * DEVICES;
    wait_until(secs(60), "samples at the true time", || {
        Ok(at_offset(&stored(&root)?, 0) >= enough)
    })?;

    // NTP steps the clock an hour back; the collector goes away and comes back meanwhile.
    step_clock(&offset_file, -3600)?;
    wait_until(secs(60), "samples an hour back", || {
        Ok(at_offset(&stored(&root)?, -HOUR_US) >= enough)
    })?;
    c.kill9();
    std::thread::sleep(secs(4));
    c.restart()?;
    let before = at_offset(&stored(&root)?, -HOUR_US);
    wait_until(
        secs(60),
        "more samples an hour back after the outage",
        || Ok(at_offset(&stored(&root)?, -HOUR_US) >= before + enough),
    )?;

    // Then half a day forward.
    step_clock(&offset_file, 43_200)?;
    wait_until(secs(60), "samples half a day ahead", || {
        Ok(at_offset(&stored(&root)?, HALF_DAY_US) >= enough)
    })?;
    wait_until(secs(30), "the spool to empty", || {
        Ok(metric(&agent, "spool_depth")? == 0.0)
    })?;
    ensure!(agent.running(), "the agent died:\n{}", agent.log_tail(30));
    let spooled = metric(&agent, "samples_spooled")?;
    let acked = metric(&agent, "samples_acked")?;
    let dropped = metric(&agent, "samples_dropped")?;
    ensure!(agent.stop(), "the agent did not stop cleanly");
    let finished = now_us();

    let all = stored(&root)?;
    // Exactly once: every sequence number from 1 to the last, none twice
    // (`stored` refuses doubles), as many as the agent spooled.
    let last = *all.keys().last().context("no samples")?;
    ensure!(
        all.len() as u64 == last && all.keys().copied().eq(1..=last),
        "{} samples, last seq {last}: holes",
        all.len()
    );
    ensure!(
        spooled as u64 == last && acked as u64 == last && dropped == 0.0,
        "agent: spooled {spooled}, acknowledged {acked}, dropped {dropped}; collector has {last}"
    );
    // The collector's receive times are true and in sequence order.
    let received: Vec<i64> = all.values().map(|(_, rx)| *rx).collect();
    ensure!(
        received.iter().all(|rx| (started..=finished).contains(rx)),
        "a receive time outside the test"
    );
    ensure!(
        received.windows(2).all(|w| w[0] <= w[1]),
        "receive times out of sequence order"
    );
    // The sample times show the steps: three phases, in sequence order.
    let phase = |(ts, rx): &(i64, i64)| -> Option<usize> {
        [0, -HOUR_US, HALF_DAY_US]
            .iter()
            .position(|off| (ts - rx - off).abs() < SLACK_US)
    };
    let phases: Vec<usize> = all
        .values()
        .map(|s| phase(s).with_context(|| format!("a sample of no phase: {s:?}")))
        .collect::<Result<_>>()?;
    ensure!(
        phases.windows(2).all(|w| w[0] <= w[1]),
        "the phases are not in sequence order: {phases:?}"
    );
    for p in 0..3 {
        ensure!(
            phases.iter().filter(|&&x| x == p).count() >= enough,
            "phase {p}: too few samples"
        );
    }
    // The agent said what it was doing with its clock.
    ensure!(
        agent
            .log_tail(400)
            .contains("SIAGA_TEST_CLOCK_OFFSET_FILE is set"),
        "no warning about the test clock"
    );
    Ok(())
}
