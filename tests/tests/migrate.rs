//! `siaga-collector migrate --to postgres://…`: a collector that ran on the
//! embedded store moves to PostgreSQL (a real cluster the test starts,
//! [`siaga_tests::postgres::Cluster`], and the real binaries).

use anyhow::{Context, Result, ensure};
use siaga_collector::rollup::{Minute, minute_of};
use siaga_collector::store::{PgStore, RedbStore, Store};
use siaga_proto::v1;
use siaga_tests::harness::text;
use siaga_tests::harness::{Collector, Inventory, Uplink, icmp_sample, now_us, runtime};
use siaga_tests::postgres::Cluster;

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

/// `siaga-collector migrate --config collector.toml --to URL EXTRA…`.
fn migrate(c: &Collector, url: &str, extra: &[&str]) -> Result<std::process::Output> {
    let config = c.config.to_str().context("config path")?;
    let mut args = vec!["migrate", "--config", config, "--to", url];
    args.extend(extra);
    c.cmd(&args)
}

const DEVICES: [&str; 2] = ["a-1", "a-2"];

/// Every per-minute rollup of `device` on `store`.
fn minutes(store: &dyn Store, device: &str) -> Result<Vec<Minute>> {
    Ok(store.minutes(device, i64::MIN, i64::MAX, 100_000)?)
}

/// The rollups of both devices read alike from the embedded store and
/// from PostgreSQL (sums to the last bits: the copy may add in another
/// order).
fn rollups_alike(data_dir: &std::path::Path, url: &str) -> Result<usize> {
    let old = RedbStore::open(data_dir)?;
    let new = PgStore::open(url)?;
    let mut n = 0;
    for d in DEVICES {
        let (a, b) = (minutes(&old, d)?, minutes(&new, d)?);
        ensure!(
            a.len() == b.len(),
            "{d}: {} minutes, {} there",
            a.len(),
            b.len()
        );
        for (x, y) in a.iter().zip(&b) {
            let close = |p: f64, q: f64| (p - q).abs() <= 1e-9 * p.abs().max(1.0);
            let folds = |m: &Minute| {
                let mut f = vec![m.rtt, m.loss, m.jitter];
                for l in &m.links {
                    f.extend([l.util_in, l.util_out, l.errors]);
                }
                f
            };
            let same = x.start_us == y.start_us
                && x.links.len() == y.links.len()
                && folds(x).iter().zip(folds(y)).all(|(p, q)| {
                    p.n == q.n
                        && (p.n == 0 || (p.min == q.min && p.max == q.max && close(p.sum, q.sum)))
                });
            ensure!(same, "{d}: {x:?} here, {y:?} there");
        }
        n += a.len();
    }
    Ok(n)
}

/// A collector on the embedded store with an agent's samples; stopped,
/// it moves to PostgreSQL: the dry run changes nothing, the run moves
/// every sample, the history reads the same before and after, a second
/// run adds nothing, and the collector runs on the new config.
#[test]
fn migrate_moves_a_collectors_samples_to_postgres_and_points_its_config_there() -> Result<()> {
    let pg = Cluster::start()?;
    let url = pg.url();
    let mut c = Collector::init()?;
    let mut inv = Inventory::new("10s").opd("a");
    for (i, d) in DEVICES.iter().enumerate() {
        inv = inv.device(d, "a", &format!("127.0.0.{}", i + 1));
    }
    c.write_inventory(&inv)?;
    let admin = c.enroll_user("budi", "admin")?;
    c.serve()?;
    let agent = c.enroll_agent("a")?;
    let tls = agent.tls()?;
    // Twenty minutes of readings every 10 s, ICMP and SNMP, per device.
    let t0 = minute_of(now_us() - 30 * 60_000_000);
    let mut samples = Vec::new();
    let mut seq = 0;
    for step in 0..120i64 {
        for d in DEVICES {
            seq += 1;
            samples.push(icmp_sample(seq, t0 + step * 10_000_000, d));
            seq += 1;
            samples.push(snmp(
                seq,
                t0 + step * 10_000_000 + 1,
                d,
                (step % 10) as f64 * 1.5,
            ));
        }
    }
    let total = samples.len();
    runtime()?.block_on(async {
        let mut up = Uplink::open(&tls, &agent.id, "a").await?;
        for chunk in samples.chunks(100) {
            let ack = up.send(chunk.to_vec()).await?;
            ensure!(ack.stored as usize == chunk.len(), "{ack:?}");
        }
        anyhow::Ok(())
    })?;
    let before: Vec<_> = DEVICES
        .iter()
        .map(|d| admin.history(d))
        .collect::<Result<_>>()?;
    ensure!(
        before.iter().all(|h| h.len() == total / 2),
        "the history before: {:?}",
        before.iter().map(Vec::len).collect::<Vec<_>>()
    );

    // While the collector runs: refused, with what to do.
    let out = migrate(&c, &url, &[])?;
    ensure!(!out.status.success(), "{}", text(&out));
    ensure!(
        text(&out).contains("stop the collector first (systemctl stop siaga-collector)"),
        "{}",
        text(&out)
    );
    ensure!(c.stop(), "the collector did not stop cleanly");
    let original = std::fs::read_to_string(&c.config)?;

    // A dry run counts and writes nothing: not even the schema.
    let out = migrate(&c, &url, &["--dry-run"])?;
    let said = text(&out);
    ensure!(out.status.success(), "{said}");
    ensure!(
        said.contains(&format!("2 devices, {total} samples")),
        "{said}"
    );
    ensure!(std::fs::read_to_string(&c.config)? == original);
    ensure!(pg.sql("SELECT to_regclass('samples') IS NULL")? == "t");

    // The run: every sample, checked, then the config.
    let out = migrate(&c, &url, &[])?;
    let said = text(&out);
    println!("{said}");
    ensure!(out.status.success(), "{said}");
    ensure!(
        said.contains(&format!(
            "2 devices, {total} samples ({total} new, 0 already there)"
        )),
        "{said}"
    );
    ensure!(said.contains("checked in"), "{said}");
    ensure!(
        said.contains("remove it once the collector runs on PostgreSQL")
            && said.contains("pg_dump"),
        "{said}"
    );
    ensure!(!said.contains("s3cret"), "{said}");
    let migrated = std::fs::read_to_string(&c.config)?;
    ensure!(
        migrated == format!("{original}[store]\nurl = \"{url}\"\n"),
        "the config, comments and all, plus [store] url:\n{migrated}"
    );
    ensure!(pg.sql("SELECT count(*) FROM samples")? == total.to_string());
    let minutes_moved = rollups_alike(&c.data_dir, &url)?;
    ensure!(minutes_moved >= 40, "{minutes_moved} minutes");

    // Run again from the old config (as after a run stopped before its
    // last step): nothing doubled, the rollups as they were.
    std::fs::write(&c.config, &original)?;
    let out = migrate(&c, &url, &[])?;
    let said = text(&out);
    ensure!(out.status.success(), "{said}");
    ensure!(
        said.contains(&format!("(0 new, {total} already there)")),
        "{said}"
    );
    ensure!(pg.sql("SELECT count(*) FROM samples")? == total.to_string());
    rollups_alike(&c.data_dir, &url)?;
    ensure!(std::fs::read_to_string(&c.config)? == migrated);

    // The config is on PostgreSQL now: validate agrees, migrate refuses.
    let v = c.validate()?;
    ensure!(v.status.success(), "{}", text(&v));
    ensure!(text(&v).contains("in PostgreSQL at"), "{}", text(&v));
    let out = migrate(&c, &url, &[])?;
    ensure!(out.status.code() == Some(64), "{}", text(&out));
    ensure!(text(&out).contains("nothing to migrate"), "{}", text(&out));

    // The collector on PostgreSQL answers the same history.
    c.serve()?;
    for (d, was) in DEVICES.iter().zip(&before) {
        let now = admin.history(d)?;
        ensure!(
            now.len() == was.len(),
            "{d}: {} samples, {} before",
            now.len(),
            was.len()
        );
        if let Some((a, b)) = now.iter().zip(was).find(|(a, b)| a != b) {
            anyhow::bail!("{d}: {a}\nbefore: {b}");
        }
    }
    Ok(())
}
