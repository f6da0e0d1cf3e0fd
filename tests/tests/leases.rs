//! The OPD leases of several collectors on one PostgreSQL (`lease.rs`), on
//! a real cluster the test starts: a collector that dies loses its leases
//! as soon as its connections close, not after the lease's time to live;
//! a collector that hangs with its connections open keeps them until they
//! expire. Each "collector" is a `Leases` on a store of its own (its own
//! connections), as each collector process has.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use siaga_collector::kv::postgres::PgKv;
use siaga_collector::lease::{Leases, TTL};
use siaga_tests::postgres::Cluster;

fn collector(pg: &Cluster, name: &str) -> Result<(Arc<PgKv>, Arc<Leases>)> {
    let kv = Arc::new(PgKv::open(&pg.url())?);
    let leases = Leases::on_postgres(kv.clone(), name.to_string());
    Ok((kv, leases))
}

/// The database's clock, in µs, as the leases count time.
fn db_now_us(pg: &Cluster) -> Result<i64> {
    Ok(pg
        .sql("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")?
        .trim()
        .parse()?)
}

fn expires_us(pg: &Cluster, opd: &str) -> Result<i64> {
    Ok(pg
        .sql(&format!(
            "SELECT expires_us FROM leases WHERE opd = '{opd}'"
        ))?
        .trim()
        .parse()?)
}

/// Rounds of `who` every 100 ms until it holds `opd`; the database's time
/// then.
fn until_taken(pg: &Cluster, who: &Leases, opd: &str) -> Result<i64> {
    let opds = vec![opd.to_string()];
    let deadline = Instant::now() + TTL * 4;
    loop {
        who.round(&opds, &HashSet::new());
        if who.holds(opd) {
            return db_now_us(pg);
        }
        ensure!(Instant::now() < deadline, "{opd} never taken");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dead_collectors_leases_move_before_they_expire_a_hung_ones_after() -> Result<()> {
    let pg = Cluster::start()?;
    let opds = vec!["dinkes".to_string(), "bappeda".to_string()];
    let none = HashSet::new();

    // A takes both; B, coming second, takes none, and A keeps them.
    let (kv_a, a) = collector(&pg, "host-a/127.0.0.1:1/0001")?;
    let (_kv_b, b) = collector(&pg, "host-b/127.0.0.1:2/0002")?;
    a.round(&opds, &none);
    ensure!(a.held() == ["bappeda", "dinkes"], "A holds {:?}", a.held());
    for _ in 0..3 {
        b.round(&opds, &none);
        ensure!(b.held().is_empty(), "B took {:?} from a live A", b.held());
        a.round(&opds, &none);
        ensure!(a.held().len() == 2, "A lost {:?}", a.held());
    }

    // A hangs: alive, connections open, no more rounds. B takes dinkes
    // only once A's lease has expired.
    let expiry = expires_us(&pg, "dinkes")?;
    let taken = until_taken(&pg, &b, "dinkes")?;
    ensure!(
        taken >= expiry,
        "B took the lease of a live (hung) A {} ms before it expired",
        (expiry - taken) / 1000
    );

    // A comes back and renews what it still holds (bappeda), not dinkes.
    a.round(&opds, &none);
    ensure!(a.held() == ["bappeda"], "A holds {:?}", a.held());

    // A dies (its process ends: every connection closes). B takes
    // bappeda although A renewed it a moment ago.
    let expiry = expires_us(&pg, "bappeda")?;
    drop(a);
    drop(kv_a);
    let taken = until_taken(&pg, &b, "bappeda")?;
    ensure!(
        taken < expiry,
        "a dead collector's lease moved only {} ms after it expired",
        (taken - expiry) / 1000
    );
    eprintln!(
        "dead holder's lease taken {} ms before its expiry",
        (expiry - taken) / 1000
    );
    ensure!(
        pg.sql("SELECT count(*) FROM leases WHERE holder LIKE 'host-b/%'")?
            .trim()
            == "2",
        "B holds both leases in the table"
    );
    Ok(())
}
