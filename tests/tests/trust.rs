//! What the collector believes of its agents and its own disk, end to end
//! with the real binaries: an OPD whose agent is gone is noticed also after a
//! collector restart (or when it never connected), an OPD without an agent is
//! shown, samples from the future are refused, a resent sample changes
//! nothing, a reading too old to stand for now is shown as `stale`, a damaged
//! store is found and refused, and a full disk stops the acknowledgements
//! until it has room again.
//! The lab tests need root (network namespaces, raw sockets, tmpfs).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use siaga_tests::harness::{
    Agent, Collector, Inventory, Siaga, Uplink, device_state, icmp_sample, now_us, runtime, secs,
    ts_us, wait_until,
};
use siaga_tests::lab::Lab;

const OPD: &str = "[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n";

fn tickets(siaga: &Siaga) -> Result<Vec<Value>> {
    let v = siaga.json(&["tickets", "--json"])?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// The tickets about an OPD's agent.
fn agent_tickets(siaga: &Siaga) -> Result<Vec<Value>> {
    Ok(tickets(siaga)?
        .into_iter()
        .filter(|t| {
            t["problem"]
                .as_str()
                .is_some_and(|p| p.contains("agent") && p.contains("unreachable"))
        })
        .collect())
}

fn device_row(siaga: &Siaga, device: &str) -> Result<Option<Value>> {
    Ok(siaga.devices()?.into_iter().find(|d| d["id"] == device))
}

/// `siaga agents --json` rows of one OPD.
fn agent_rows(siaga: &Siaga, opd: &str) -> Result<Vec<Value>> {
    Ok(siaga
        .agents()?
        .into_iter()
        .filter(|a| a["opd"] == opd)
        .collect())
}

/// Waits for the one agent-unreachable ticket of a collector started at
/// `started_us` and checks it is the only one, for `opd`, opened by it.
fn one_agent_ticket(siaga: &Siaga, started_us: i64, devices: &[&str]) -> Result<Value> {
    wait_until(secs(90), "an agent-unreachable ticket", || {
        Ok(!agent_tickets(siaga)?.is_empty())
    })?;
    // The devices turn unknown with the same silence; by then any second
    // ticket would have opened.
    wait_until(secs(30), "the OPD's devices unknown", || {
        for d in devices {
            if device_state(siaga, d)? != "unknown" {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    let all = tickets(siaga)?;
    ensure!(all.len() == 1, "exactly one ticket: {all:#?}");
    let t = all[0].clone();
    ensure!(t["opd"] == "dinkes" && t["origin"] == "detected", "{t:#?}");
    let opened = ts_us(&t["opened_at"]).context("opened_at")?;
    ensure!(
        opened >= started_us - 1_000_000,
        "opened by the collector started at {started_us}: {t:#?}"
    );
    println!(
        "agent-unreachable ticket opened {:.1} s after the collector started",
        (opened - started_us) as f64 / 1e6
    );
    Ok(t)
}

fn wait_recovered(siaga: &Siaga, id: &str) -> Result<()> {
    wait_until(secs(90), "the agent's ticket recovered", || {
        Ok(tickets(siaga)?
            .iter()
            .any(|t| t["id"] == id && !t["recovered_at"].is_null()))
    })
}

#[test]
fn an_agent_gone_while_the_collector_was_down_is_one_ticket_after_the_restart_and_recovers()
-> Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n{OPD}\n[[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\n\
         kind = \"switch\"\naddress = \"{}\"\n",
        lab.addr("sw1")?
    ))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let mut agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "dinkes-sw1 up", || {
        Ok(device_state(&siaga, "dinkes-sw1")? == "up")
    })?;

    // The collector goes down for a patch; the OPD loses power meanwhile.
    ensure!(c.stop(), "the collector stops cleanly");
    agent.kill9();
    let started = now_us();
    c.restart()?;
    let t = one_agent_ticket(&siaga, started, &["dinkes-sw1"])?;
    let id = t["id"].as_str().unwrap_or_default().to_string();
    let rows = agent_rows(&siaga, "dinkes")?;
    ensure!(
        rows.len() == 1 && rows[0]["status"] == "disconnected" && !rows[0]["last_seen"].is_null(),
        "the agent heard before the restart is shown disconnected: {rows:#?}"
    );

    // Power is back.
    agent.restart()?;
    wait_recovered(&siaga, &id)?;
    wait_until(secs(60), "dinkes-sw1 up again", || {
        Ok(device_state(&siaga, "dinkes-sw1")? == "up")
    })?;
    let all = tickets(&siaga)?;
    ensure!(all.len() == 1, "no second ticket: {all:#?}");
    Ok(())
}

#[test]
fn an_enrolled_agent_that_never_connected_is_one_ticket_and_recovers_when_it_connects() -> Result<()>
{
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n{OPD}\n[[device]]\nid = \"dinkes-lo\"\nopd = \"dinkes\"\n\
         kind = \"switch\"\naddress = \"127.0.0.1\"\n"
    ))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    let started = now_us();
    c.serve()?;
    let rows = agent_rows(&siaga, "dinkes")?;
    ensure!(
        rows.len() == 1
            && rows[0]["id"] == agent_cfg.id.as_str()
            && rows[0]["status"] == "never_connected"
            && rows[0]["last_seen"].is_null(),
        "the enrolled agent is listed as never connected: {rows:#?}"
    );
    let t = one_agent_ticket(&siaga, started, &["dinkes-lo"])?;
    ensure!(
        t["problem"]
            .as_str()
            .is_some_and(|p| p.contains("it has never connected")),
        "the ticket says the agent never connected: {t:#?}"
    );
    let id = t["id"].as_str().unwrap_or_default().to_string();

    let _agent = Agent::start(agent_cfg.clone())?;
    wait_recovered(&siaga, &id)?;
    wait_until(secs(60), "the agent connected", || {
        Ok(agent_rows(&siaga, "dinkes")?
            .iter()
            .any(|a| a["id"] == agent_cfg.id.as_str() && a["status"] == "connected"))
    })?;
    let all = tickets(&siaga)?;
    ensure!(all.len() == 1, "no second ticket: {all:#?}");
    Ok(())
}

#[test]
fn an_opd_with_devices_and_no_agent_enrolled_is_listed_and_validate_warns() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("1s")
            .opd("dinkes")
            .opd("bappeda")
            .device("dinkes-lo", "dinkes", "127.0.0.1")
            .device("bappeda-lo", "bappeda", "127.0.0.2"),
    )?;
    c.enroll_agent("dinkes")?;
    let out = c.validate()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "validate passes: {stderr}");
    ensure!(
        stderr.contains("warning:")
            && stderr.contains("OPD \"bappeda\" has 1 device(s) but no agent is enrolled")
            && !stderr.contains("\"dinkes\""),
        "validate warns about bappeda only:\n{stderr}"
    );
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let rows = agent_rows(&siaga, "bappeda")?;
    ensure!(
        rows.len() == 1 && rows[0]["status"] == "no_agent_enrolled" && rows[0]["id"].is_null(),
        "bappeda is shown without an agent: {rows:#?}"
    );
    let table = siaga.run(&["agents"])?;
    let text = String::from_utf8_lossy(&table.stdout);
    ensure!(
        text.lines()
            .any(|l| l.contains("bappeda") && l.contains("no agent enrolled")),
        "{text}"
    );
    Ok(())
}

/// A collector with one OPD and device on loopback, a user and an agent
/// identity spoken with directly.
fn direct(interval: &str) -> Result<(Collector, Siaga, siaga_tests::harness::AgentConfig)> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new(interval)
            .opd("a")
            .device("a-sw1", "a", "127.0.0.1"),
    )?;
    let agent = c.enroll_agent("a")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    Ok((c, siaga, agent))
}

#[test]
fn a_future_stamped_sample_is_refused_and_counted_and_the_agent_clock_offset_is_shown() -> Result<()>
{
    let (_c, siaga, agent) = direct("10s")?;
    let rt = runtime()?;
    let now = now_us();
    let good = now - 2_000_000;
    let (ack_future, ack_good) = rt.block_on(async {
        let mut up = Uplink::open(&agent.tls()?, &agent.id, "a").await?;
        // This agent's clock runs 5 s behind the collector's.
        up.heartbeat(now - 5_000_000).await?;
        let future = up
            .send(vec![icmp_sample(1, now + 3_600_000_000, "a-sw1")])
            .await?;
        let good = up.send(vec![icmp_sample(2, good, "a-sw1")]).await?;
        Ok::<_, anyhow::Error>((future, good))
    })?;
    ensure!(
        ack_future.refused == 1 && ack_future.stored == 0,
        "the sample an hour ahead is refused (and the agent may drop it): {ack_future:?}"
    );
    ensure!(ack_good.stored == 1, "{ack_good:?}");
    // The device list prints times to the millisecond, the history (proto3
    // JSON) to the microsecond: compared to the millisecond.
    let good_ms = good / 1_000 * 1_000;
    let history: Vec<i64> = siaga
        .history_ts("a-sw1")?
        .iter()
        .map(|t| t / 1_000 * 1_000)
        .collect();
    ensure!(
        history == [good_ms],
        "only the good sample is stored: {history:?}"
    );
    let d = device_row(&siaga, "a-sw1")?.context("a-sw1 listed")?;
    ensure!(
        ts_us(&d["last_sample_at"]) == Some(good_ms),
        "the latest reading is the good one, not frozen in the future: {d:#?}"
    );
    let a = siaga.agent(&agent.id)?.context("agent listed")?;
    ensure!(a["future_refused"] == 1, "counted: {a:#?}");
    let offset = a["clock_offset_ms"]
        .as_f64()
        .context("clock offset shown")?;
    ensure!(
        (4_000.0..10_000.0).contains(&offset),
        "the collector is about 5 s ahead of this agent: {offset} ms"
    );
    let table = String::from_utf8_lossy(&siaga.run(&["agents"])?.stdout).to_string();
    ensure!(
        table.contains("clock offset") && table.contains("+5."),
        "{table}"
    );
    Ok(())
}

#[test]
fn a_resent_sample_keeps_its_first_body_and_arrival_time() -> Result<()> {
    let (_c, siaga, agent) = direct("10s")?;
    let rt = runtime()?;
    let ts = now_us() - 1_000_000;
    let (first, again) = rt.block_on(async {
        let mut up = Uplink::open(&agent.tls()?, &agent.id, "a").await?;
        let first = up.send(vec![icmp_sample(7, ts, "a-sw1")]).await?;
        // The same (agent, seq) once more, with other figures.
        let mut changed = icmp_sample(7, ts, "a-sw1");
        if let Some(siaga_proto::v1::sample::Kind::Icmp(i)) = &mut changed.kind {
            i.received = 0;
            i.loss_pct = 100.0;
        }
        let again = up.send(vec![changed]).await?;
        Ok::<_, anyhow::Error>((first, again))
    })?;
    ensure!(first.stored == 1, "{first:?}");
    ensure!(
        again.duplicates == 1 && again.stored == 0,
        "the resend is a duplicate: {again:?}"
    );
    let before = siaga.history("a-sw1")?;
    ensure!(before.len() == 1, "{before:#?}");
    let h = &before[0];
    ensure!(
        h["loss_pct"].as_f64() == Some(0.0),
        "the first body stays: {h:#?}"
    );
    let received = ts_us(&h["received_at"]).context("received_at")?;
    ensure!(
        received <= now_us() && received >= ts,
        "the first arrival stays: {h:#?}"
    );
    Ok(())
}

#[test]
fn a_device_whose_readings_stopped_is_stale_with_their_age_then_current_again() -> Result<()> {
    let (_c, siaga, agent) = direct("1s")?;
    let rt = runtime()?;
    let mut up = rt.block_on(Uplink::open(&agent.tls()?, &agent.id, "a"))?;
    let now = now_us();
    let mut seq = 0;
    for ago in [3, 2, 1] {
        seq += 1;
        rt.block_on(up.send(vec![icmp_sample(seq, now - ago * 1_000_000, "a-sw1")]))?;
    }
    // The agent stays connected and keeps its heartbeat; only the device's
    // readings stop.
    wait_until(secs(30), "a-sw1 up", || {
        rt.block_on(up.heartbeat(now_us()))?;
        Ok(device_state(&siaga, "a-sw1")? == "up")
    })?;
    wait_until(secs(30), "a-sw1 stale", || {
        rt.block_on(up.heartbeat(now_us()))?;
        Ok(device_state(&siaga, "a-sw1")? == "stale")
    })?;
    let d = device_row(&siaga, "a-sw1")?.context("a-sw1")?;
    let age = d["reading_age_s"].as_i64().context("age shown")?;
    ensure!(age >= 3, "older than 3 intervals of 1 s: {d:#?}");
    let table = String::from_utf8_lossy(&siaga.run(&["devices"])?.stdout).to_string();
    ensure!(
        table
            .lines()
            .any(|l| l.contains("a-sw1") && l.contains("stale (")),
        "{table}"
    );
    let show = String::from_utf8_lossy(&siaga.run(&["device", "a-sw1"])?.stdout).to_string();
    ensure!(show.contains("state stale (newest reading"), "{show}");
    // A new reading: current again.
    seq += 1;
    rt.block_on(up.send(vec![icmp_sample(seq, now_us(), "a-sw1")]))?;
    wait_until(secs(30), "a-sw1 current again", || {
        rt.block_on(up.heartbeat(now_us()))?;
        Ok(device_state(&siaga, "a-sw1")? == "up")
    })?;
    Ok(())
}

/// Flips every byte of each occurrence of `pattern` in `file`: some of them
/// sit in the live pages of the file's trees.
fn flip(file: &Path, pattern: &[u8]) -> Result<usize> {
    let mut bytes = std::fs::read(file)?;
    let mut hits = 0;
    let mut i = 0;
    while i + pattern.len() <= bytes.len() {
        if &bytes[i..i + pattern.len()] == pattern {
            for b in &mut bytes[i..i + pattern.len()] {
                *b ^= 0x5a;
            }
            hits += 1;
            i += pattern.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(file, &bytes)?;
    Ok(hits)
}

#[test]
fn flipped_bytes_inside_each_store_file_are_found_by_verify_and_refused_at_start() -> Result<()> {
    for (file, pattern) in [
        ("collector.redb", b"a-sw1".as_slice()),
        ("tickets.redb", b"schema_version".as_slice()),
    ] {
        let (mut c, _siaga, agent) = direct("10s")?;
        let rt = runtime()?;
        rt.block_on(async {
            let mut up = Uplink::open(&agent.tls()?, &agent.id, "a").await?;
            let now = now_us();
            for seq in 1..=50u64 {
                up.send(vec![icmp_sample(seq, now - seq as i64 * 1_000, "a-sw1")])
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        ensure!(c.stop(), "the collector stops cleanly");
        let config = c.config.to_str().context("path")?.to_string();
        let out = c.cmd(&["verify", "--config", &config])?;
        ensure!(
            out.status.success(),
            "an intact store verifies: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let path = c.data_dir.join(file);
        let len = std::fs::metadata(&path)?.len();
        let hits = flip(&path, pattern)?;
        ensure!(hits > 0, "{file}: {pattern:?} not found");
        println!("{file}: {len} bytes, {hits} occurrence(s) of the pattern flipped");

        let out = c.cmd(&["verify", "--config", &config])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(!out.status.success(), "{file}: verify fails:\n{text}");
        ensure!(
            text.contains(&format!("{file}: the store is damaged"))
                && text.contains("restore the last backup"),
            "{file}: verify names the file and what to do:\n{text}"
        );

        match c.restart() {
            Ok(_) => bail!("{file}: the collector started on a damaged store"),
            Err(e) => {
                let msg = format!("{e:#}");
                ensure!(
                    msg.contains(&format!("{file}: the store is damaged"))
                        && msg.contains("siaga-collector restore")
                        && !msg.contains("panicked"),
                    "{file}: one clear error at start:\n{msg}"
                );
            }
        }
    }
    Ok(())
}

/// A tmpfs of `mib` MiB mounted on `dir`, unmounted when dropped.
struct Tmpfs {
    dir: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()?;
        ensure!(st.success(), "mount tmpfs on {}", dir.display());
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Writes `file` until the file system is full.
fn fill(file: &Path) -> Result<u64> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(file)?;
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let _ = f.sync_all();
    Ok(n)
}

#[test]
fn on_a_full_disk_the_collector_acknowledges_nothing_and_recovers_by_itself() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("a")
            .device("a-sw1", "a", "127.0.0.1"),
    )?;
    let agent = c.enroll_agent("a")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    // The data directory on a small disk of its own.
    let _disk = Tmpfs::mount(&c.data_dir, 16)?;
    c.serve()?;
    let rt = runtime()?;
    let now = now_us();
    let sample = |seq: u64| icmp_sample(seq, now - 60_000_000 + seq as i64 * 1_000, "a-sw1");
    let mut seq = 0u64;
    let mut next = |n: usize| -> Vec<siaga_proto::v1::Sample> {
        (0..n)
            .map(|_| {
                seq += 1;
                sample(seq)
            })
            .collect()
    };
    let first = next(10);
    let ack = rt.block_on(async {
        let mut up = Uplink::open(&agent.tls()?, &agent.id, "a").await?;
        up.send(first).await
    })?;
    ensure!(ack.stored == 10, "{ack:?}");

    let filler = c.data_dir.join("filler");
    let filled = fill(&filler)?;
    println!("disk filled with {filled} bytes");
    // Every batch now meets the full disk: none is acknowledged, each
    // stream ends with an error the agent retries on.
    let mut refused_batches = 0;
    let mut held: Vec<siaga_proto::v1::Sample> = Vec::new();
    for _ in 0..3 {
        let batch = next(2_000);
        held.extend(batch.iter().cloned());
        let answer = rt.block_on(async {
            let mut up = Uplink::open(&agent.tls()?, &agent.id, "a").await?;
            up.send_or_status(batch).await
        })?;
        match answer {
            Ok(ack) => bail!("a batch was acknowledged on a full disk: {ack:?}"),
            Err(status) => {
                ensure!(
                    status.code() == tonic::Code::Unavailable,
                    "the agent is told to retry: {status:?}"
                );
                refused_batches += 1;
            }
        }
    }
    ensure!(refused_batches == 3);

    // Room again: the same samples, resent as an agent replays its spool,
    // are stored, with no restart.
    std::fs::remove_file(&filler)?;
    let n = held.len() as u32;
    wait_until(
        secs(60),
        "the held samples stored after the disk has room",
        || {
            let batch = held.clone();
            let answer = rt.block_on(async {
                let mut up = Uplink::open(&agent.tls()?, &agent.id, "a").await?;
                up.send_or_status(batch).await
            })?;
            Ok(matches!(answer, Ok(ack) if ack.stored + ack.duplicates == n))
        },
    )?;
    let stored = siaga.history("a-sw1")?.len();
    ensure!(
        stored == 10 + held.len(),
        "every sample is there once: {stored}"
    );
    ensure!(c.pid().is_some(), "the same collector process");
    let log = c.log_tail(400);
    ensure!(
        log.contains("store reopened after a write error"),
        "the store came back by itself:\n{log}"
    );
    Ok(())
}
