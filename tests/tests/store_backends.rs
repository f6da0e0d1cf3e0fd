//! The sample store on both backends: the embedded one (redb) and
//! PostgreSQL on a real cluster the test starts itself
//! ([`siaga_tests::postgres::Cluster`]).

use anyhow::{Context, Result, ensure};
use siaga_collector::store::{
    AgentRecord, BatchOutcome, HistoryFrom, IngestBatch, Latest, PgStore, RedbStore, Store,
    StoredSample,
};
use siaga_proto::v1;
use siaga_tests::harness::text;
use siaga_tests::harness::{
    Collector, Inventory, Uplink, free_port, icmp_sample, now_us, runtime, secs, set_toml,
    wait_until,
};
use siaga_tests::postgres::Cluster;

/// Whether process `pid` still runs (a zombie waiting for its reaper does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, after) = s.rsplit_once(')')?;
            after.split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn the_test_cluster_starts_answers_and_leaves_nothing_behind() -> Result<()> {
    let pg = Cluster::start()?;
    let data = pg.data();
    let pid = pg.pid()?;
    ensure!(alive(pid), "the postmaster {pid} is not running");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer: i32 = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .context("connecting")?;
        tokio::spawn(conn);
        let row = client.query_one("SELECT 6 * 7", &[]).await?;
        anyhow::Ok(row.get::<_, i32>(0))
    })?;
    ensure!(answer == 42, "{answer}");
    // Not as root: PostgreSQL refuses to.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .context("no Uid in /proc/pid/status")?;
    ensure!(uid != "0", "the server runs as root");
    let children = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()?;
    ensure!(
        !children.stdout.is_empty(),
        "pgrep -P {pid} finds no server processes"
    );
    drop(pg);
    // `pg_ctl stop -w` returns once the postmaster removed its pid file,
    // a moment before it exits.
    wait_until(secs(10), "the postmaster gone", || Ok(!alive(pid)))?;
    let left = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()?;
    ensure!(
        left.stdout.is_empty(),
        "server processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    ensure!(!data.exists(), "{} left behind", data.display());
    Ok(())
}

// ---- One suite, two backends -------------------------------------------
//
// Each behaviour below is written once against `&dyn Store`; `on_both!`
// runs it on the embedded store and on PostgreSQL.

/// 2026-12-06 00:00 UTC, µs: a day boundary.
const DAY0: i64 = 1_796_515_200_000_000;
const DAY: i64 = 86_400_000_000;
const MIN: i64 = 60_000_000;

fn icmp(seq: u64, ts_us: i64, device: &str, loss: f64) -> v1::Sample {
    v1::Sample {
        seq,
        ts_us,
        device: device.into(),
        kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
            sent: 4,
            received: 4,
            loss_pct: loss,
            rtt_avg_us: Some(1500),
            ..Default::default()
        })),
    }
}

fn snmp(seq: u64, ts_us: i64, device: &str, util_in: f64) -> v1::Sample {
    v1::Sample {
        seq,
        ts_us,
        device: device.into(),
        kind: Some(v1::sample::Kind::Snmp(v1::SnmpResult {
            sys_name: device.into(),
            interfaces: vec![v1::Interface {
                if_index: 1,
                if_name: "ge-0/0/1".into(),
                link_name: "uplink".into(),
                util_in_pct: Some(util_in),
                ..Default::default()
            }],
            ..Default::default()
        })),
    }
}

fn batch_at(agent: &str, received_us: i64, samples: Vec<v1::Sample>) -> IngestBatch {
    IngestBatch::new(agent, received_us, samples.into())
}

fn batch(agent: &str, samples: Vec<v1::Sample>) -> IngestBatch {
    batch_at(agent, DAY0 + 7, samples)
}

fn loss_of(s: &StoredSample) -> f64 {
    match &s.sample.kind {
        Some(v1::sample::Kind::Icmp(i)) => i.loss_pct,
        other => panic!("not an ICMP sample: {other:?}"),
    }
}

fn keys(h: &[StoredSample]) -> Vec<(i64, String, u64)> {
    h.iter()
        .map(|s| (s.sample.ts_us, s.agent.clone(), s.sample.seq))
        .collect()
}

fn outcome(stored: u32, duplicates: u32) -> BatchOutcome {
    BatchOutcome { stored, duplicates }
}

/// A replayed sample (same agent, sequence) is counted a duplicate, in the
/// same batch, in the same commit or later; the same sequence from another
/// agent is a sample of its own.
fn drops_duplicates_by_agent_and_sequence(s: &dyn Store) -> Result<()> {
    let t = DAY0 + 1_000;
    let o = s.commit(
        &[
            batch("a", vec![icmp(1, t, "x", 0.0), icmp(1, t, "x", 0.0)]),
            batch("a", vec![icmp(1, t, "x", 0.0), icmp(2, t + 1, "x", 0.0)]),
            batch("b", vec![icmp(1, t, "x", 0.0)]),
        ],
        &[],
    )?;
    assert_eq!(o, [outcome(1, 1), outcome(1, 1), outcome(1, 0)]);
    let o = s.commit(
        &[batch(
            "a",
            vec![icmp(2, t + 1, "x", 0.0), icmp(3, t + 2, "x", 0.0)],
        )],
        &[],
    )?;
    assert_eq!(o, [outcome(1, 1)]);
    assert_eq!(s.history("x", 0, 100)?.len(), 4);
    Ok(())
}

/// A resend with another body and a later receive time changes nothing.
fn a_resend_keeps_the_first_body_and_receive_time(s: &dyn Store) -> Result<()> {
    let t = DAY0 + 5 * MIN;
    s.commit(
        &[batch_at("a", DAY0 + 10, vec![icmp(7, t, "x", 12.5)])],
        &[],
    )?;
    let o = s.commit(
        &[batch_at("a", DAY0 + 99, vec![icmp(7, t, "x", 99.0)])],
        &[],
    )?;
    assert_eq!(o, [outcome(0, 1)]);
    let h = s.history("x", 0, 10)?;
    assert_eq!(h.len(), 1);
    assert_eq!(loss_of(&h[0]), 12.5);
    assert_eq!(h[0].received_us, Some(DAY0 + 10));
    assert_eq!((h[0].agent.as_str(), h[0].sample.seq), ("a", 7));
    assert_eq!(h[0].sample, icmp(7, t, "x", 12.5));
    Ok(())
}

/// A history is in time order (then agent, sequence) whatever order the
/// samples came in, starts at `since`, stops at `limit`, holds one device;
/// read range by range it is the same history.
fn history_is_in_time_order_from_since(s: &dyn Store) -> Result<()> {
    let t = DAY0 + 3_000;
    s.commit(
        &[
            batch(
                "b",
                vec![icmp(1, t + 30, "x", 0.0), icmp(2, t + 10, "x", 0.0)],
            ),
            batch(
                "a",
                vec![icmp(5, t + 20, "x", 0.0), icmp(6, t + 10, "x", 0.0)],
            ),
            batch(
                "a",
                vec![icmp(7, t + 15, "xy", 0.0), icmp(8, t + 5, "w", 0.0)],
            ),
        ],
        &[],
    )?;
    // Across a day boundary too (another partition on PostgreSQL).
    s.commit(&[batch("a", vec![icmp(9, t + DAY, "x", 0.0)])], &[])?;
    let all = s.history("x", 0, 100)?;
    let want = vec![
        (t + 10, "a".to_string(), 6),
        (t + 10, "b".to_string(), 2),
        (t + 20, "a".to_string(), 5),
        (t + 30, "b".to_string(), 1),
        (t + DAY, "a".to_string(), 9),
    ];
    assert_eq!(keys(&all), want);
    assert_eq!(keys(&s.history("x", t + 11, 100)?), want[2..]);
    assert_eq!(keys(&s.history("x", t + 10, 2)?), want[..2]);
    assert!(s.history("nothing", 0, 100)?.is_empty());
    // Range by range, two at a time, until a time.
    let mut read = Vec::new();
    let mut from = HistoryFrom::Since(t);
    loop {
        let part = s.history_range("x", &from, t + DAY, 2)?;
        let Some(last) = part.last() else { break };
        from = HistoryFrom::After(last.sample.ts_us, last.agent.clone(), last.sample.seq);
        read.extend(part);
    }
    assert_eq!(keys(&read), want[..4]);
    assert!(
        s.history_range("x", &HistoryFrom::Since(t + 31), t + DAY, 10)?
            .is_empty()
    );
    Ok(())
}

/// Retention deletes the samples before the cut, across days, and keeps
/// the rest; it says how many went.
fn prune_deletes_what_is_older_than_the_cut(s: &dyn Store) -> Result<()> {
    let mut samples = Vec::new();
    for d in 0..3 {
        for i in 0..4u64 {
            samples.push(icmp(
                d as u64 * 10 + i,
                DAY0 + d * DAY + i as i64 * 1_000,
                "x",
                0.0,
            ));
        }
    }
    samples.push(icmp(100, DAY0 + 2_000, "y", 0.0));
    s.commit(&[batch("a", samples)], &[])?;
    // Two whole days of "x" and "y"'s one, and two samples of the third day.
    assert_eq!(s.prune(DAY0 + 2 * DAY + 2_000)?, 4 + 4 + 1 + 2);
    let left: Vec<u64> = s
        .history("x", 0, 100)?
        .iter()
        .map(|h| h.sample.seq)
        .collect();
    assert_eq!(left, [22, 23]);
    assert!(s.history("y", 0, 100)?.is_empty());
    assert_eq!(s.prune(DAY0 + 2 * DAY + 2_000)?, 0);
    Ok(())
}

/// A minute's start (from `DAY0`) and its loss fold: n, min, max, sum.
type LossMinute = (i64, u32, f64, f64, f64);

fn rollup_of(s: &dyn Store, device: &str) -> Result<Vec<LossMinute>> {
    Ok(s.minutes(device, i64::MIN, i64::MAX, 1_000)?
        .iter()
        .map(|m| {
            (
                m.start_us - DAY0,
                m.loss.n,
                m.loss.min,
                m.loss.max,
                m.loss.sum,
            )
        })
        .collect())
}

/// Each newly stored sample is folded once into its device's minute; a
/// resend is not; retention drops the minutes that ended before the cut.
fn rollups_fold_each_stored_sample_once(s: &dyn Store) -> Result<()> {
    s.commit(
        &[batch(
            "a",
            vec![
                icmp(1, DAY0 + 10, "x", 10.0),
                icmp(2, DAY0 + MIN + 5, "x", 20.0),
                icmp(3, DAY0 + 30, "y", 50.0),
                snmp(4, DAY0 + 40, "x", 33.0),
            ],
        )],
        &[],
    )?;
    s.commit(
        &[
            batch(
                "a",
                vec![
                    icmp(5, DAY0 + 59_000_000, "x", 40.0),
                    icmp(1, DAY0 + 10, "x", 99.0),
                ],
            ),
            batch("b", vec![icmp(1, DAY0 + 20, "x", 0.0)]),
        ],
        &[],
    )?;
    assert_eq!(
        rollup_of(s, "x")?,
        [(0, 3, 0.0, 40.0, 50.0), (MIN, 1, 20.0, 20.0, 20.0)]
    );
    assert_eq!(rollup_of(s, "y")?, [(0, 1, 50.0, 50.0, 50.0)]);
    let first = &s.minutes("x", DAY0, DAY0 + 1, 10)?[0];
    let uplink = first.link("uplink").context("the link's minute")?;
    assert_eq!((uplink.util_in.n, uplink.util_in.max), (1, 33.0));
    assert_eq!(s.minutes("x", DAY0 + 1, i64::MAX, 10)?.len(), 1);
    assert_eq!(s.minutes("x", i64::MIN, i64::MAX, 1)?.len(), 1);
    assert_eq!(s.prune(DAY0 + MIN + 1)?, 5);
    assert_eq!(rollup_of(s, "x")?, [(MIN, 1, 20.0, 20.0, 20.0)]);
    Ok(())
}

/// The newest reading of each kind, kept against replays of older ones.
fn latest_keeps_the_newest_of_each_kind(s: &dyn Store) -> Result<()> {
    assert_eq!(s.latest("x")?, Latest::default());
    s.commit(
        &[batch(
            "a",
            vec![
                icmp(1, DAY0 + 100, "x", 1.0),
                icmp(2, DAY0 + 300, "x", 3.0),
                snmp(3, DAY0 + 200, "x", 5.0),
            ],
        )],
        &[],
    )?;
    s.commit(&[batch("a", vec![icmp(4, DAY0 + 250, "x", 2.0)])], &[])?;
    let l = s.latest("x")?;
    assert_eq!(l.icmp, Some(icmp(2, DAY0 + 300, "x", 3.0)));
    assert_eq!(l.snmp, Some(snmp(3, DAY0 + 200, "x", 5.0)));
    assert_eq!(l.last_sample_us, Some(DAY0 + 300));
    assert_eq!(s.latest("y")?, Latest::default());
    Ok(())
}

/// Agents' records: stored, replaced by the newer one, listed.
fn agents_are_stored_and_replaced(s: &dyn Store) -> Result<()> {
    let rec = |id: &str, seen: i64| AgentRecord {
        id: id.into(),
        opd: "dinkes".into(),
        version: "0.1.0".into(),
        last_seen_us: seen,
        clock_offset_us: Some(-3),
        cpu_pct: 1.5,
        ..Default::default()
    };
    s.commit(&[], &[rec("a", 1), rec("b", 2)])?;
    s.commit(
        &[batch("a", vec![icmp(1, DAY0, "x", 0.0)])],
        &[rec("a", 5), rec("a", 9)],
    )?;
    let mut all = s.agents()?;
    all.sort_by(|p, q| p.id.cmp(&q.id));
    assert_eq!(all, [rec("a", 9), rec("b", 2)]);
    Ok(())
}

macro_rules! on_both {
    ($($behaviour:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[test]
                fn $behaviour() -> Result<()> {
                    let dir = tempfile::tempdir()?;
                    let store = RedbStore::open(dir.path())?;
                    super::$behaviour(&store)
                }
            )*
        }
        mod postgresql {
            use super::*;
            $(
                #[test]
                fn $behaviour() -> Result<()> {
                    let pg = Cluster::start()?;
                    let store = PgStore::open(&pg.url())?;
                    super::$behaviour(&store)
                }
            )*
        }
    };
}

on_both!(
    drops_duplicates_by_agent_and_sequence,
    a_resend_keeps_the_first_body_and_receive_time,
    history_is_in_time_order_from_since,
    prune_deletes_what_is_older_than_the_cut,
    rollups_fold_each_stored_sample_once,
    latest_keeps_the_newest_of_each_kind,
    agents_are_stored_and_replaced,
);

// ---- What only PostgreSQL claims ----------------------------------------

/// Retention drops the partitions of whole days before the cut (no row by
/// row delete there) and keeps the day the cut falls in.
#[test]
fn postgres_prune_drops_the_partitions_of_whole_days() -> Result<()> {
    let pg = Cluster::start()?;
    let s = PgStore::open(&pg.url())?;
    let samples = (0..3)
        .map(|d| icmp(d as u64, DAY0 + d * DAY + 5, "x", 0.0))
        .collect();
    s.commit(&[batch("a", samples)], &[])?;
    let days = ["samples_20261206", "samples_20261207", "samples_20261208"];
    let parts = s.partitions()?;
    for d in days {
        ensure!(parts.iter().any(|p| p == d), "{d} missing from {parts:?}");
    }
    assert_eq!(s.prune(DAY0 + 2 * DAY + 1)?, 2);
    let parts = s.partitions()?;
    ensure!(
        !parts.iter().any(|p| p == days[0] || p == days[1]),
        "the pruned days' partitions are still there: {parts:?}"
    );
    ensure!(parts.iter().any(|p| p == days[2]), "{parts:?}");
    // A late sample of a dropped day gets its partition back.
    let o = s.commit(&[batch("a", vec![icmp(9, DAY0 + 9, "x", 0.0)])], &[])?;
    assert_eq!(o, [outcome(1, 0)]);
    ensure!(s.partitions()?.iter().any(|p| p == days[0]));
    // So does one that another collector's retention dropped meanwhile.
    let other = PgStore::open(&pg.url())?;
    assert_eq!(other.prune(DAY0 + DAY)?, 1);
    let o = s.commit(&[batch("a", vec![icmp(10, DAY0 + 10, "x", 0.0)])], &[])?;
    assert_eq!(o, [outcome(1, 0)]);
    Ok(())
}

/// The same batch committed at once through two connections (two
/// collectors, or an agent that failed over mid-ack) is stored once and
/// folded once: one commit stores it, the other counts duplicates.
#[test]
fn postgres_the_same_batch_from_two_connections_is_stored_once() -> Result<()> {
    let pg = Cluster::start()?;
    let stores = [PgStore::open(&pg.url())?, PgStore::open(&pg.url())?];
    let samples: Vec<v1::Sample> = (0..500u64)
        .map(|i| icmp(i, DAY0 + i as i64 * 100_000, "x", 1.0))
        .collect();
    for round in 0..5 {
        let shifted: Vec<v1::Sample> = samples
            .iter()
            .map(|s| v1::Sample {
                seq: s.seq + round * 1_000,
                ..s.clone()
            })
            .collect();
        let b = batch("a", shifted);
        let go = std::sync::Barrier::new(2);
        let outcomes = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .map(|s| {
                    let (b, go) = (&b, &go);
                    scope.spawn(move || {
                        go.wait();
                        s.commit(std::slice::from_ref(b), &[])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("commit thread"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let stored: u32 = outcomes.iter().map(|o| o[0].stored).sum();
        let dups: u32 = outcomes.iter().map(|o| o[0].duplicates).sum();
        assert_eq!((stored, dups), (500, 500), "round {round}: {outcomes:?}");
    }
    assert_eq!(stores[0].history("x", 0, 10_000)?.len(), 2_500);
    let folded: u32 = stores[1]
        .minutes("x", i64::MIN, i64::MAX, 1_000)?
        .iter()
        .map(|m| m.loss.n)
        .sum();
    assert_eq!(folded, 2_500);
    Ok(())
}

/// Two collectors folding different samples into the same minutes at
/// once: the minutes hold both parts (the server adds under the row's lock).
#[test]
fn postgres_two_connections_folding_into_one_minute_keep_both_parts() -> Result<()> {
    let pg = Cluster::start()?;
    let stores = [PgStore::open(&pg.url())?, PgStore::open(&pg.url())?];
    for round in 0..5i64 {
        let go = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let go = &go;
                    scope.spawn(move || {
                        // Agent k, its own sequence numbers, the same
                        // devices and minutes as the other.
                        let samples = (0..200u64)
                            .map(|i| {
                                let t = DAY0 + round * MIN + (i as i64 % 50) * 1_000_000 + k as i64;
                                let mut x = icmp(i, t, &format!("d{}", i % 4), 10.0);
                                if (i / 4) % 2 == 1 {
                                    x = snmp(i, t, &format!("d{}", i % 4), 50.0);
                                }
                                x
                            })
                            .collect();
                        let agent = format!("agent-{k}");
                        go.wait();
                        s.commit(&[batch(&agent, samples)], &[])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("commit thread"))
                .collect::<Result<Vec<_>, _>>()
        })?;
    }
    for d in 0..4 {
        let minutes = stores[0].minutes(&format!("d{d}"), i64::MIN, i64::MAX, 100)?;
        assert_eq!(minutes.len(), 5, "d{d}");
        for m in &minutes {
            // Per minute and device: 50 samples from each of two agents,
            // half ICMP, half SNMP with the link.
            assert_eq!(m.loss.n, 50, "d{d} {}", m.start_us);
            let link = m.link("uplink").context("the link's minute")?;
            assert_eq!((link.util_in.n, link.util_in.sum), (50, 2_500.0));
        }
    }
    Ok(())
}

/// Collectors starting together on an empty database: one creates the
/// schema, the others wait for it and use it.
#[test]
fn postgres_collectors_starting_together_create_the_schema_once() -> Result<()> {
    let pg = Cluster::start()?;
    let url = pg.url();
    let go = std::sync::Barrier::new(4);
    let stores = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (url, go) = (&url, &go);
                scope.spawn(move || {
                    go.wait();
                    PgStore::open(url)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("open thread"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    for (i, s) in stores.iter().enumerate() {
        s.commit(&[batch("a", vec![icmp(i as u64, DAY0, "x", 0.0)])], &[])?;
    }
    assert_eq!(stores[0].history("x", 0, 10)?.len(), 4);
    assert_eq!(
        PgStore::schema_version(&url)?,
        Some(siaga_collector::store::PG_SCHEMA_VERSION)
    );
    Ok(())
}

// ---- The collector on PostgreSQL ----------------------------------------

/// `[store] url`: the collector acknowledges what PostgreSQL holds, drops
/// a resend there, serves the history from it, and writes no sample file.
#[test]
fn a_collector_with_a_store_url_keeps_its_samples_in_postgres() -> Result<()> {
    let pg = Cluster::start()?;
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    set_toml(&c.config, "store.url", pg.url().into())?;
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let cfg = c.enroll_agent("a")?;
    let tls = cfg.tls()?;
    let t = now_us() - 10_000_000;
    let samples: Vec<v1::Sample> = (1..=3)
        .map(|i| icmp_sample(i, t + i as i64, "a-1"))
        .collect();
    let (first, again) = runtime()?.block_on(async {
        let mut up = Uplink::open(&tls, &cfg.id, "a").await?;
        let first = up.send(samples.clone()).await?;
        let again = up.send(samples.clone()).await?;
        anyhow::Ok((first, again))
    })?;
    ensure!(first.stored == 3, "{first:?}");
    ensure!((again.stored, again.duplicates) == (0, 3), "{again:?}");
    let in_pg = PgStore::open(&pg.url())?.history("a-1", 0, 100)?;
    ensure!(
        in_pg.iter().map(|s| s.sample.seq).collect::<Vec<_>>() == [1, 2, 3],
        "{in_pg:?}"
    );
    ensure!(admin.history_ts("a-1")?.len() == 3);
    let file = c.data_dir.join("collector.redb");
    ensure!(
        !file.exists(),
        "{} written beside PostgreSQL",
        file.display()
    );
    // `validate` says where things live, and that the schema fits.
    let v = c.validate()?;
    let out = text(&v);
    ensure!(v.status.success(), "{out}");
    let at = format!(
        "PostgreSQL at postgres@127.0.0.1:{}/siaga (schema version 2)",
        pg.port()
    );
    ensure!(out.contains(&at), "{out}");
    // No TLS from the test cluster: said, and that loopback stays here.
    ensure!(
        out.contains("the connection not encrypted (sslmode=prefer; it stays on this host)"),
        "{out}"
    );
    ensure!(
        out.contains(
            "tickets, SOP trails, health records, events, measurements and frozen reports"
        ),
        "{out}"
    );
    Ok(())
}

/// `validate` with `[store] url`: a database that does not answer is a
/// clear error with the next step (exit 69), a malformed URL names file,
/// line and key (exit 64), an empty database is fine; the password is
/// never repeated.
#[test]
fn validate_checks_the_store_url_and_says_what_to_do() -> Result<()> {
    let pg = Cluster::start()?;
    let c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    let v = c.validate()?;
    ensure!(v.status.success(), "{}", text(&v));
    ensure!(
        text(&v).contains("store: everything in the data directory"),
        "{}",
        text(&v)
    );

    set_toml(&c.config, "store.url", pg.url().into())?;
    let v = c.validate()?;
    ensure!(v.status.success(), "{}", text(&v));
    ensure!(text(&v).contains("no Siaga schema yet"), "{}", text(&v));

    // Nothing listens there.
    let closed = free_port()?;
    set_toml(
        &c.config,
        "store.url",
        format!("postgres://siaga:s3cret@127.0.0.1:{closed}/siaga").into(),
    )?;
    let v = c.validate()?;
    let out = text(&v);
    ensure!(v.status.code() == Some(69), "{:?}: {out}", v.status);
    ensure!(
        out.contains("store.url: PostgreSQL at siaga@127.0.0.1:")
            && out.contains("does not answer")
            && out.contains("pg_isready"),
        "{out}"
    );
    ensure!(!out.contains("s3cret"), "the password is repeated: {out}");

    set_toml(
        &c.config,
        "store.url",
        "postgres://siaga:s3cret@db:port/x".into(),
    )?;
    let v = c.validate()?;
    let out = text(&v);
    ensure!(v.status.code() == Some(64), "{:?}: {out}", v.status);
    ensure!(
        out.contains("collector.toml:") && out.contains(": store.url: not a PostgreSQL URL"),
        "{out}"
    );
    ensure!(!out.contains("s3cret"), "the password is repeated: {out}");
    Ok(())
}

/// An agent naming a device or link with a NUL (or another control
/// character) has those samples refused, counted and answered (the agent
/// drops them), the rest of the batch stored, and its stream kept: on
/// PostgreSQL, whose `text` holds no NUL, such a batch used to fail its
/// commit and come back forever.
fn ids_with_control_characters_are_refused_not_retried(url: Option<String>) -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    if let Some(url) = url {
        set_toml(&c.config, "store.url", url.into())?;
    }
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let cfg = c.enroll_agent("a")?;
    let tls = cfg.tls()?;
    let t = now_us() - 10_000_000;
    let mut nul_link = snmp(2, t + 2, "a-1", 10.0);
    if let Some(v1::sample::Kind::Snmp(r)) = &mut nul_link.kind {
        r.interfaces[0].link_name = "up\0link".into();
    }
    let batch = vec![
        icmp_sample(1, t + 1, "a-1"),
        nul_link,
        icmp_sample(3, t + 3, "a-1\0"),
        icmp_sample(4, t + 4, "a-1\u{1b}[2J"),
    ];
    let (first, refusals, next) = runtime()?.block_on(async {
        let mut up = Uplink::open(&tls, &cfg.id, "a").await?;
        let (first, refusals) = up.send_with_refusals(batch).await?;
        // The same stream still takes samples.
        let next = up
            .send_or_status(vec![icmp_sample(5, t + 5, "a-1")])
            .await?;
        anyhow::Ok((first, refusals, next))
    })?;
    ensure!(
        (first.stored, first.refused) == (1, 3),
        "{first:?} {refusals:?}"
    );
    let reasons: Vec<(&str, u32)> = refusals
        .iter()
        .map(|r| (r.reason.as_str(), r.samples))
        .collect();
    ensure!(
        reasons
            == [(
                "samples naming a device or link with a control character (such as NUL)",
                3
            )],
        "{reasons:?}"
    );
    let next = next.map_err(|s| anyhow::anyhow!("the stream ended: {s}"))?;
    ensure!(next.stored == 1, "{next:?}");
    let stored = admin.history_ts("a-1")?;
    ensure!(stored == [t + 1, t + 5], "{stored:?}");
    Ok(())
}

#[test]
fn embedded_ids_with_control_characters_are_refused_not_retried() -> Result<()> {
    ids_with_control_characters_are_refused_not_retried(None)
}

#[test]
fn postgresql_ids_with_control_characters_are_refused_not_retried() -> Result<()> {
    let pg = Cluster::start()?;
    ids_with_control_characters_are_refused_not_retried(Some(pg.url()))
}

/// `backup` on a collector with `[store] url`: the archive holds the data
/// directory's files (the revocation list, the CA's ledger) but neither the
/// samples nor the tickets, which are in the database, and the answer
/// (manifest and output) names the database and the `pg_dump` command for
/// them, without the password; that command, run as shown, dumps both.
#[test]
fn a_backup_beside_postgres_says_how_to_dump_the_database() -> Result<()> {
    let pg = Cluster::start()?;
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    // The test cluster trusts loopback: the password is there only to be
    // left out.
    let url = format!(
        "postgres://postgres:s3cret@127.0.0.1:{}/{}",
        pg.port(),
        siaga_tests::postgres::DATABASE
    );
    set_toml(&c.config, "store.url", url.into())?;
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let cfg = c.enroll_agent("a")?;
    let tls = cfg.tls()?;
    let t = now_us() - 10_000_000;
    runtime()?.block_on(async {
        let mut up = Uplink::open(&tls, &cfg.id, "a").await?;
        up.send(
            (1..=3)
                .map(|i| icmp_sample(i, t + i as i64, "a-1"))
                .collect(),
        )
        .await
    })?;

    let archive = c.root().join("backup.tar");
    let o = c.cmd(&[
        "backup",
        "--out",
        archive.to_str().context("path")?,
        "--user-config",
        admin.config.to_str().context("path")?,
    ])?;
    let out = text(&o);
    ensure!(o.status.success(), "backup: {out}");
    ensure!(!out.contains("s3cret"), "the password is repeated: {out}");
    let dump = format!(
        "pg_dump --host=127.0.0.1 --port={} --username=postgres --format=custom \
         --file=siaga.dump --dbname=siaga",
        pg.port()
    );
    ensure!(
        out.contains(&format!(
            "samples, tickets, SOP trails, measurements and reports: not in this backup, they are \
             in PostgreSQL at postgres@127.0.0.1:{}/siaga; back them up with `{dump}`",
            pg.port()
        )),
        "{out}"
    );

    let listed = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()?;
    let members = String::from_utf8_lossy(&listed.stdout).to_string();
    ensure!(
        !members
            .lines()
            .any(|l| l == "tickets.redb" || l == "collector.redb"),
        "{members}"
    );
    let m = std::process::Command::new("tar")
        .arg("-xOf")
        .arg(&archive)
        .arg("manifest.json")
        .output()?;
    let manifest: serde_json::Value = serde_json::from_slice(&m.stdout)?;
    ensure!(
        manifest["samples_elsewhere"]["pg_dump"] == dump.as_str(),
        "{manifest}"
    );
    ensure!(!manifest.to_string().contains("s3cret"), "{manifest}");

    // The command as shown dumps the samples.
    let work = tempfile::tempdir()?;
    let ran = std::process::Command::new("sh")
        .arg("-c")
        .arg(&dump)
        .current_dir(work.path())
        .env("PGCONNECT_TIMEOUT", "10")
        .output()?;
    ensure!(ran.status.success(), "{dump}: {}", text(&ran));
    let list = std::process::Command::new("pg_restore")
        .arg("--list")
        .arg(work.path().join("siaga.dump"))
        .output()?;
    let list = text(&list);
    ensure!(
        list.contains("TABLE DATA public samples_")
            && list.contains("TABLE DATA public agents")
            && list.contains("TABLE DATA public kv"),
        "{list}"
    );
    Ok(())
}

/// `restore` of a backup taken beside PostgreSQL: the tickets and their
/// trails are in the database, not in the backup, so restoring it into the
/// collector's directory rolls no trail back: no refusal, no recorded
/// loss, and `verify` passes after; the output says how the database
/// itself is restored.
#[test]
fn restoring_a_backup_beside_postgres_rolls_no_trail_back() -> Result<()> {
    use siaga_tests::office::{OFFICE_USERS, Office};
    let pg = Cluster::start()?;
    let c = Collector::init()?;
    c.write_inventory(&Inventory::new("10s").opd("dinkes").device(
        "dinkes-rtr",
        "dinkes",
        "198.18.40.1",
    ))?;
    set_toml(&c.config, "store.url", pg.url().into())?;
    let mut o = Office::serve(c, &OFFICE_USERS)?;
    let id = o.new_letter(
        "001/RESTORE/XII",
        &siaga_tests::office::letter_date(),
        "Internet putus",
        &[],
    )?;
    let archive = o.collector.root().join("backup.tar");
    let root = o.user("root")?.config.clone();
    let b = o.collector.cmd(&[
        "backup",
        "--out",
        archive.to_str().context("path")?,
        "--user-config",
        root.to_str().context("path")?,
    ])?;
    ensure!(b.status.success(), "backup: {}", text(&b));
    o.collector.stop();
    let config = o.collector.config.to_str().context("path")?.to_string();
    let r = o.collector.cmd(&[
        "restore",
        "--from",
        archive.to_str().context("path")?,
        "--config",
        &config,
        "--force",
    ])?;
    let out = text(&r);
    ensure!(r.status.success(), "restore: {out}");
    ensure!(
        !out.contains("would lose") && !out.contains("roll"),
        "a restore beside PostgreSQL claimed a rollback: {out}"
    );
    ensure!(out.contains("pg_restore"), "{out}");
    let v = o.collector.cmd(&["verify", "--config", &config])?;
    ensure!(v.status.success(), "verify: {}", text(&v));
    o.collector.serve()?;
    ensure!(
        o.json("hd", &["ticket", "show", &id, "--json"])?["ticket"]["id"] == id.as_str(),
        "{id} not shown after the restore"
    );
    Ok(())
}

/// `validate` warns when the collector's sessions would run with
/// `synchronous_commit = off` (a server crash could lose acknowledged
/// samples), and only then; a warning, not a refusal.
#[test]
fn validate_warns_when_synchronous_commit_is_off() -> Result<()> {
    let pg = Cluster::start()?;
    let c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    set_toml(&c.config, "store.url", pg.url().into())?;
    let v = c.validate()?;
    let out = text(&v);
    ensure!(v.status.success(), "{out}");
    ensure!(!out.contains("synchronous_commit"), "{out}");

    // Set for the database: new sessions there get it.
    pg.sql("ALTER DATABASE siaga SET synchronous_commit = off")?;
    let v = c.validate()?;
    let out = text(&v);
    ensure!(v.status.success(), "a warning, not a refusal: {out}");
    let stderr = String::from_utf8_lossy(&v.stderr);
    ensure!(
        stderr.contains(&format!(
            "warning: {}: store.url: PostgreSQL at postgres@127.0.0.1:{}/siaga runs the \
             collector's sessions with synchronous_commit = off",
            c.config.display(),
            pg.port()
        )) && stderr.contains("`ALTER ROLE postgres SET synchronous_commit = on`"),
        "{out}"
    );

    // Turned on for the role, as the warning says: no warning.
    pg.sql("ALTER ROLE postgres SET synchronous_commit = on")?;
    let v = c.validate()?;
    let out = text(&v);
    ensure!(v.status.success(), "{out}");
    ensure!(!out.contains("synchronous_commit"), "{out}");
    Ok(())
}

/// An agent whose `Hello` carries a NUL or other control characters (its
/// host name, its version) is kept with those characters replaced: its
/// record is stored, and on PostgreSQL (whose `jsonb` holds no NUL) the
/// group commit that carries it, with other agents' samples, succeeds.
fn agent_text_with_control_characters_is_stored_plain(url: Option<String>) -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    if let Some(url) = url {
        set_toml(&c.config, "store.url", url.into())?;
    }
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let cfg = c.enroll_agent("a")?;
    let tls = cfg.tls()?;
    let t = now_us() - 10_000_000;
    let acks = runtime()?.block_on(async {
        let mut up = Uplink::open_as(&tls, &cfg.id, "a", "ho\0st\u{1b}[2J").await?;
        let mut acks = Vec::new();
        for i in 1..=3 {
            acks.push(
                up.send_or_status(vec![icmp_sample(i, t + i as i64, "a-1")])
                    .await?,
            );
        }
        anyhow::Ok(acks)
    })?;
    for a in &acks {
        let a = a
            .as_ref()
            .map_err(|s| anyhow::anyhow!("the stream ended: {s}"))?;
        ensure!(a.stored == 1, "{a:?}");
    }
    let agents = admin.agents()?;
    let hostnames: Vec<&str> = agents
        .iter()
        .filter_map(|a| a["hostname"].as_str())
        .collect();
    ensure!(hostnames == ["ho\u{fffd}st\u{fffd}[2J"], "{agents:?}");
    Ok(())
}

#[test]
fn embedded_agent_text_with_control_characters_is_stored_plain() -> Result<()> {
    agent_text_with_control_characters_is_stored_plain(None)
}

#[test]
fn postgresql_agent_text_with_control_characters_is_stored_plain() -> Result<()> {
    let pg = Cluster::start()?;
    agent_text_with_control_characters_is_stored_plain(Some(pg.url()))?;
    // The record is in the database, not only in the collector's memory.
    let stored = PgStore::open(&pg.url())?.agents()?;
    let hostnames: Vec<&str> = stored.iter().map(|a| a.hostname.as_str()).collect();
    ensure!(hostnames == ["ho\u{fffd}st\u{fffd}[2J"], "{stored:?}");
    Ok(())
}
