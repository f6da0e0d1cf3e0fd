//! The spine, end to end: real `siaga-collector`, `siaga-agent` and `siaga`
//! processes, real mTLS with certificates from `init`/`enroll`, real redb on
//! disk, ICMP against loopback targets only.
//!
//! Build the binaries first: `cargo build --workspace --bins`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use siaga_tests::harness::*;

/// The probe cycle of these tests.
const INTERVAL_US: i64 = 1_000_000;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An agent of OPD `a` probing `a-1` (127.0.0.1) and `a-2` (127.0.0.2) every
/// second, with its collector and an admin.
fn collector_with_agent() -> Result<(Collector, Siaga, Agent)> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("1s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1")
            .device("a-2", "a", "127.0.0.2"),
    )?;
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let cfg = c.enroll_agent("a")?;
    cfg.set("interval", "1s")?;
    let agent = Agent::start(cfg)?;
    wait_until(secs(60), "the agent to connect", || {
        Ok(admin
            .agent(&agent.id)?
            .is_some_and(|a| a["connected"] == true))
    })?;
    wait_until(secs(60), "three samples of a-1", || {
        Ok(admin.history_ts("a-1")?.len() >= 3)
    })?;
    Ok((c, admin, agent))
}

/// Waits until the agent is connected, its spool is empty, and `device`'s
/// history has no gap longer than two probe intervals between `from` and
/// `to`; fails with the gap it last saw.
fn wait_for_replay(
    admin: &Siaga,
    agent_id: &str,
    devices: &[&str],
    from: i64,
    to: i64,
) -> Result<()> {
    let mut last = String::new();
    let r = wait_until(secs(90), "the agent to replay its spool", || {
        let a = admin.agent(agent_id)?.context("agent not listed")?;
        if a["connected"] != true || a["spool_depth"].as_u64() != Some(0) {
            last = format!("agent: {a}");
            return Ok(false);
        }
        for d in devices {
            let ts = admin.history_ts(d)?;
            let gap = largest_gap(&ts, from, to);
            if gap > 2 * INTERVAL_US {
                last = format!("{d}: largest gap {gap} µs in [{from}, {to}]");
                return Ok(false);
            }
        }
        Ok(true)
    });
    r.with_context(|| last.clone())
}

#[test]
fn clients_without_a_certificate_or_from_another_ca_are_refused() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("1s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let agent = c.enroll_agent("a")?;
    let rt = runtime()?;

    // The enrolled identities are accepted (so the refusals below are about
    // the certificate, not about the test's TLS set-up).
    let me = rt.block_on(whoami(&admin.tls()?))?;
    assert_eq!(me.user, "budi");
    rt.block_on(Uplink::open(&agent.tls()?, &agent.id, "a"))?;

    // No client certificate at all.
    let none = agent.tls()?.without_identity();
    let r = rt.block_on(Uplink::open(&none, &agent.id, "a"));
    assert!(
        r.is_err(),
        "uplink without a client certificate was accepted"
    );
    let r = rt.block_on(whoami(&none));
    assert!(
        r.is_err(),
        "admin API without a client certificate answered: {r:?}"
    );

    // A certificate from another CA, naming the same agent and user.
    let foreign = agent
        .tls()?
        .with_foreign_identity(&format!("siaga://agent/a/{}", agent.id))?;
    let r = rt.block_on(Uplink::open(&foreign, &agent.id, "a"));
    assert!(
        r.is_err(),
        "uplink with a foreign CA's certificate was accepted"
    );
    let foreign_user = admin.tls()?.with_foreign_identity("siaga://user/budi")?;
    let r = rt.block_on(whoami(&foreign_user));
    assert!(
        r.is_err(),
        "admin API with a foreign CA's certificate answered: {r:?}"
    );

    // The same through the CLI: a siaga.toml with a foreign certificate
    // fails with one clear line and a non-zero exit.
    let dir = c.root().join("mallory");
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = foreign_client_cert("siaga://user/budi")?;
    std::fs::write(dir.join("user.pem"), cert)?;
    std::fs::write(dir.join("user.key"), key)?;
    std::fs::copy(&agent.ca, dir.join("ca.pem"))?;
    std::fs::write(
        dir.join("siaga.toml"),
        format!(
            "collector = \"{}\"\nserver_name = \"{}\"\nuser = \"budi\"\n[tls]\nca = \"ca.pem\"\ncert = \"user.pem\"\nkey = \"user.key\"\n",
            agent.collector, agent.server_name
        ),
    )?;
    let mallory = Siaga {
        config: dir.join("siaga.toml"),
    };
    let out = mallory.run(&["agents", "--json"])?;
    assert!(
        !out.status.success(),
        "siaga with a foreign certificate succeeded"
    );
    assert!(
        out.stdout.is_empty(),
        "printed data: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");

    // Nothing of the refused connections shows up as an agent.
    let agents = admin.agents()?;
    assert!(agents.len() <= 1, "{agents:?}");
    Ok(())
}

#[test]
fn an_agent_cannot_write_samples_for_another_opds_device() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("1s")
            .opd("a")
            .opd("b")
            .device("a-1", "a", "127.0.0.1")
            .device("b-1", "b", "127.0.0.2"),
    )?;
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let agent = c.enroll_agent("a")?;
    let rt = runtime()?;

    let (mixed, only_b, inventory) = rt.block_on(async {
        let mut up = Uplink::open(&agent.tls()?, &agent.id, "a").await?;
        let now = now_us();
        let mixed = up
            .send(vec![
                icmp_sample(1, now, "a-1"),
                icmp_sample(2, now + 1000, "b-1"),
            ])
            .await?;
        let only_b = up.send(vec![icmp_sample(3, now + 2000, "b-1")]).await?;
        anyhow::Ok((mixed, only_b, up.inventory.clone()))
    })?;
    assert_eq!((mixed.stored, mixed.refused), (1, 1), "{mixed:?}");
    assert_eq!((only_b.stored, only_b.refused), (0, 1), "{only_b:?}");

    // The agent got its own OPD's inventory and nothing of b's.
    if let Some(inv) = inventory {
        let ids: Vec<&str> = inv.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a-1"], "inventory sent to an agent of OPD a");
    }

    let entry = admin
        .agent(&agent.id)?
        .context("agent not in `siaga agents`")?;
    assert_eq!(entry["opd"], "a");
    assert_eq!(entry["refused"].as_u64(), Some(2), "{entry}");
    assert!(
        admin.history("b-1")?.is_empty(),
        "b-1 got samples from a's agent"
    );
    assert_eq!(admin.history("a-1")?.len(), 1);

    // The refusal is logged with the agent's identity.
    let log = c.log_tail(200);
    assert!(
        log.lines()
            .any(|l| l.to_lowercase().contains("refus") && l.contains(&agent.id)),
        "no refusal naming {} in the collector log:\n{log}",
        agent.id
    );
    Ok(())
}

#[test]
fn every_acknowledged_sample_survives_kill9_of_the_collector_exactly_once() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("1s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let agent = c.enroll_agent("a")?;
    let tls = agent.tls()?;
    let rt = runtime()?;

    // Stream batches of 10 samples until the collector dies; keep what was
    // acknowledged.
    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    // Whole milliseconds: `siaga history` prints times to the millisecond.
    let base = now_us() / 1000 * 1000 - 600_000_000;
    let task = {
        let (acked, tls, id) = (acked.clone(), tls.clone(), agent.id.clone());
        rt.spawn(async move {
            let mut up = Uplink::open(&tls, &id, "a").await?;
            let mut seq = 0u64;
            loop {
                let batch: Vec<_> = (0..10)
                    .map(|_| {
                        seq += 1;
                        icmp_sample(seq, base + seq as i64 * 1000, "a-1")
                    })
                    .collect();
                let ts: Vec<i64> = batch.iter().map(|s| s.ts_us).collect();
                let ack = up.send(batch).await?;
                ensure!(ack.stored == 10, "{ack:?}");
                acked
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .extend(ts);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            #[allow(unreachable_code)]
            anyhow::Ok(())
        })
    };
    wait_until(secs(30), "five acknowledged batches", || {
        Ok(acked.lock().map(|a| a.len() >= 50).unwrap_or(false))
    })?;
    c.kill9();
    let ended = rt.block_on(task)?;
    assert!(ended.is_err(), "the stream went on after kill -9");
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();

    c.restart()?;
    let stored = admin.history_ts("a-1")?;
    let mut count: BTreeMap<i64, usize> = BTreeMap::new();
    for t in &stored {
        *count.entry(*t).or_default() += 1;
    }
    let lost: Vec<_> = acked.iter().filter(|t| !count.contains_key(t)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged samples lost: {lost:?}",
        lost.len()
    );
    let doubled: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");

    // A replay of everything (as an agent that lost its acks would do) is
    // recognised by (agent, seq) and stores nothing twice.
    let n = acked.len();
    let ack = rt.block_on(async {
        let mut up = Uplink::open(&tls, &agent.id, "a").await?;
        let replay: Vec<_> = (1..=n as u64)
            .map(|seq| icmp_sample(seq, base + seq as i64 * 1000, "a-1"))
            .collect();
        up.send(replay).await
    })?;
    assert_eq!((ack.stored, ack.duplicates), (0, n as u32), "{ack:?}");
    assert_eq!(admin.history_ts("a-1")?.len(), stored.len());
    Ok(())
}

#[test]
fn kill9_of_the_collector_while_an_agent_streams_leaves_no_gap() -> Result<()> {
    let (mut c, admin, agent) = collector_with_agent()?;
    let before = admin.history_ts("a-1")?;
    let start = *before.iter().min().context("no samples")?;

    c.kill9();
    let killed = now_us();
    // The outage itself (not a wait for readiness): the agent keeps probing.
    std::thread::sleep(secs(5));
    c.restart()?;
    let restarted = now_us();
    wait_for_replay(
        &admin,
        &agent.id,
        &["a-1", "a-2"],
        start,
        restarted + 2 * INTERVAL_US,
    )?;

    let after = admin.history_ts("a-1")?;
    assert!(
        duplicates(&after).is_empty(),
        "duplicates: {:?}",
        duplicates(&after)
    );
    let after_set: BTreeSet<i64> = after.iter().copied().collect();
    let lost: Vec<_> = before.iter().filter(|t| !after_set.contains(t)).collect();
    assert!(
        lost.is_empty(),
        "samples stored before the kill are gone: {lost:?}"
    );
    let during = after
        .iter()
        .filter(|t| **t > killed && **t < restarted)
        .count();
    assert!(during >= 3, "only {during} samples from the 5 s outage");
    Ok(())
}

#[test]
fn samples_taken_while_the_collector_is_stopped_for_20s_all_arrive() -> Result<()> {
    let (mut c, admin, agent) = collector_with_agent()?;
    let start = *admin
        .history_ts("a-1")?
        .iter()
        .min()
        .context("no samples")?;

    assert!(c.stop(), "the collector did not stop cleanly on SIGTERM");
    let stopped = now_us();
    std::thread::sleep(secs(21));
    c.restart()?;
    let restarted = now_us();
    ensure!(restarted - stopped >= 20_000_000);
    wait_for_replay(
        &admin,
        &agent.id,
        &["a-1", "a-2"],
        start,
        restarted + 2 * INTERVAL_US,
    )?;
    for d in ["a-1", "a-2"] {
        let ts = admin.history_ts(d)?;
        assert!(
            duplicates(&ts).is_empty(),
            "{d}: duplicates {:?}",
            duplicates(&ts)
        );
        let during = ts
            .iter()
            .filter(|t| **t > stopped && **t < restarted)
            .count();
        assert!(
            during >= 10,
            "{d}: only {during} samples from the 20 s outage"
        );
    }
    Ok(())
}

#[test]
fn kill9_of_the_agent_replays_its_unacknowledged_samples_once() -> Result<()> {
    let (c, admin, mut agent) = collector_with_agent()?;
    let start = *admin
        .history_ts("a-1")?
        .iter()
        .min()
        .context("no samples")?;

    // Freeze the collector: the agent's batches go out but are not
    // acknowledged, so they stay in its spool.
    c.pause();
    let paused = now_us();
    std::thread::sleep(secs(4));
    agent.kill9();
    let killed = now_us();
    c.resume();
    agent.restart()?;
    wait_for_replay(&admin, &agent.id, &["a-1", "a-2"], start, killed)?;
    for d in ["a-1", "a-2"] {
        let ts = admin.history_ts(d)?;
        assert!(
            duplicates(&ts).is_empty(),
            "{d}: duplicates {:?}",
            duplicates(&ts)
        );
        let during = ts.iter().filter(|t| **t > paused && **t < killed).count();
        assert!(
            during >= 2,
            "{d}: only {during} samples from before the kill"
        );
    }
    Ok(())
}

#[test]
fn a_full_spool_drops_the_oldest_and_the_count_reaches_siaga_agents() -> Result<()> {
    let mut c = Collector::init()?;
    let mut inv = Inventory::new("1s").opd("a");
    for i in 1..=20 {
        inv = inv.device(&format!("a-{i}"), "a", &format!("127.0.0.{i}"));
    }
    c.write_inventory(&inv)?;
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let cfg = c.enroll_agent("a")?;
    cfg.set("interval", "1s")?
        .set("metrics_listen", "127.0.0.1:0")?
        .set("spool.max_bytes", 262_144)?;
    let mut agent = Agent::start(cfg)?;
    wait_until(secs(60), "samples of a-1", || {
        Ok(!admin.history_ts("a-1")?.is_empty())
    })?;
    let before = admin.agent(&agent.id)?.context("agent not listed")?;
    assert_eq!(before["dropped"].as_u64(), Some(0), "{before}");

    c.kill9();
    let killed = now_us();
    wait_until(secs(60), "the agent to drop samples", || {
        Ok(metric_containing(&agent.metrics()?, "dropped").is_some_and(|v| v > 0.0))
    })?;
    // Let the outage last a few more cycles so that the spool turns over.
    std::thread::sleep(secs(4));
    c.restart()?;
    wait_until(
        secs(90),
        "`siaga agents` to show the dropped samples, spool drained",
        || {
            let Some(a) = admin.agent(&agent.id)? else {
                return Ok(false);
            };
            let counted = metric_containing(&agent.metrics()?, "dropped").unwrap_or(0.0);
            Ok(a["connected"] == true
                && a["spool_depth"].as_u64() == Some(0)
                && a["dropped"]
                    .as_u64()
                    .is_some_and(|d| d > 0 && d as f64 == counted))
        },
    )?;
    assert!(agent.running());

    // Drop-oldest: after the kill, a-1's history has a hole at the start of
    // the outage, then an unbroken run up to now.
    let now = now_us();
    let ts = admin.history_ts("a-1")?;
    let first = ts
        .iter()
        .copied()
        .filter(|t| *t > killed)
        .min()
        .context("nothing of a-1 after the kill")?;
    assert!(
        first > killed + 3 * INTERVAL_US,
        "the oldest samples of the outage were kept (first at +{} µs)",
        first - killed
    );
    let gap = largest_gap(&ts, first, now - 3 * INTERVAL_US);
    assert!(
        gap <= 2 * INTERVAL_US,
        "the newest samples have a hole of {gap} µs"
    );
    Ok(())
}

fn line_of(text: &str, needle: &str) -> Result<usize> {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .with_context(|| format!("{needle:?} not found"))
}

/// The error names the file, the line and the key.
fn assert_names(err: &str, file: &std::path::Path, line: usize, key: &str) {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(err.contains(name), "error does not name {name}: {err}");
    assert!(
        err.contains(&format!(":{line}")) || err.contains(&format!("line {line}")),
        "error does not name line {line}: {err}"
    );
    assert!(err.contains(key), "error does not name key {key}: {err}");
}

#[test]
fn broken_config_and_inventory_name_file_line_and_key() -> Result<()> {
    let mut c = Collector::init()?;
    let good = Inventory::new("1s")
        .opd("a")
        .device("a-1", "a", "127.0.0.1");
    c.write_inventory(&good)?;

    // A valid set validates.
    let out = c.validate()?;
    assert!(
        out.status.success(),
        "validate refused a good config: {}",
        stderr(&out)
    );

    // inventory.toml: an unknown device kind.
    let inv_path = c.inventory_path()?;
    let broken = good
        .to_toml()
        .replace("kind = \"server\"", "kind = \"toaster\"");
    let line = line_of(&broken, "toaster")?;
    c.write_inventory_text(&broken)?;
    let out = c.validate()?;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert_names(&stderr(&out), &inv_path, line, "kind");
    c.write_inventory(&good)?;

    // collector.toml: a listen address that is not one.
    let text = std::fs::read_to_string(&c.config)?;
    let line = line_of(&text, "listen =")?;
    let original = text.clone();
    let broken: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                "listen = \"nowhere\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&c.config, broken.join("\n"))?;
    let out = c.validate()?;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert_names(&stderr(&out), &c.config, line, "listen");
    std::fs::write(&c.config, original)?;

    // agent.toml: an interval that is not a duration.
    let agent = c.enroll_agent("a")?;
    let text = std::fs::read_to_string(&agent.path)?;
    let line = line_of(&text, "interval")?;
    let broken: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                "interval = \"soon\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&agent.path, broken.join("\n"))?;
    let out = std::process::Command::new(bin("siaga-agent")?)
        .args(["validate", "--config"])
        .arg(&agent.path)
        .output()?;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert_names(&stderr(&out), &agent.path, line, "interval");

    // reload: a broken inventory is refused and the old one stays.
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let ids = |v: Vec<Value>| -> Vec<String> {
        v.iter()
            .filter_map(|d| d["id"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(ids(admin.devices()?), ["a-1"]);
    let broken = good
        .clone()
        .device("a-2", "a", "127.0.0.2")
        .to_toml()
        .replacen("kind = \"server\"", "kind = \"toaster\"", 1);
    let line = line_of(&broken, "toaster")?;
    c.write_inventory_text(&broken)?;
    let out = c.reload()?;
    assert!(!out.status.success(), "reload accepted a broken inventory");
    assert_names(&stderr(&out), &inv_path, line, "kind");
    assert_eq!(
        ids(admin.devices()?),
        ["a-1"],
        "the old inventory did not stay"
    );

    // ... and a good one is applied without a restart.
    c.write_inventory(&good.device("a-2", "a", "127.0.0.2"))?;
    let out = c.reload()?;
    assert!(out.status.success(), "reload failed: {}", stderr(&out));
    wait_until(secs(30), "a-2 in `siaga devices`", || {
        Ok(ids(admin.devices()?).contains(&"a-2".to_string()))
    })?;
    Ok(())
}
