//! The PostgreSQL store over TLS, against a real cluster that speaks only
//! TLS on TCP ([`Cluster::start_tls`]), and `siaga-collector init --store`.

use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use siaga_collector::store::{IngestBatch, PgStore, Store};
use siaga_tests::harness::text;
use siaga_tests::harness::{
    Collector, Inventory, Uplink, bin, free_port, icmp_sample, now_us, runtime,
};
use siaga_tests::postgres::{Cluster, DATABASE};

/// `postgres://postgres@HOST:PORT/siaga?QUERY`.
fn url(host: &str, pg: &Cluster, query: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/{DATABASE}?{query}",
        pg.port()
    )
}

/// A CA of its own: not the one that signed the server's certificate.
fn other_ca(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&rcgen::KeyPair::generate()?)?;
    let path = dir.join("other-ca.pem");
    std::fs::write(&path, cert.pem())?;
    Ok(path)
}

fn error_of<T>(r: Result<T, siaga_collector::error::StoreError>) -> Result<String> {
    match r {
        Ok(_) => anyhow::bail!("connected where it must not"),
        Err(e) => Ok(e.to_string()),
    }
}

/// verify-full with the right CA stores and reads back, encrypted; a wrong
/// CA, a host name the certificate does not hold, and a plain connection
/// to a server that wants TLS are each refused with what to do next.
#[test]
fn the_store_speaks_tls_and_checks_the_servers_certificate() -> Result<()> {
    let pg = Cluster::start_tls()?;
    let ca = pg
        .ca_pem()
        .context("a TLS cluster has a CA")?
        .display()
        .to_string();
    let full = url(
        "127.0.0.1",
        &pg,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );

    let store = PgStore::open(&full)?;
    let t = now_us() - 5_000_000;
    let samples = vec![icmp_sample(1, t, "a-1"), icmp_sample(2, t + 1, "a-1")];
    let out = store.commit(&[IngestBatch::new("agent-1", t, samples.into())], &[])?;
    ensure!(out[0].stored == 2, "{out:?}");
    let back = store.history("a-1", 0, 10)?;
    ensure!(
        back.iter().map(|s| s.sample.seq).collect::<Vec<_>>() == [1, 2],
        "{back:?}"
    );
    drop(store);
    let seen = PgStore::inspect(&full)?;
    ensure!(seen.encrypted == Some(true), "{seen:?}");
    ensure!(
        seen.encryption.contains("TLSv1.3") && seen.encryption.contains("and the host name"),
        "{seen:?}"
    );

    let dir = tempfile::tempdir()?;
    let wrong = other_ca(dir.path())?;
    let err = error_of(PgStore::open(&url(
        "127.0.0.1",
        &pg,
        &format!("sslmode=verify-full&sslrootcert={}", wrong.display()),
    )))?;
    ensure!(
        err.contains("sslmode=verify-full") && err.contains("not signed by the CA in sslrootcert"),
        "{err}"
    );

    // The certificate names 127.0.0.1, not localhost: verify-full refuses,
    // verify-ca (the CA only) connects.
    let err = error_of(PgStore::inspect(&url(
        "localhost",
        &pg,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    )))?;
    ensure!(err.contains("does not name the host"), "{err}");
    let seen = PgStore::inspect(&url(
        "localhost",
        &pg,
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))?;
    ensure!(
        seen.encrypted == Some(true) && seen.encryption.contains("not its host name"),
        "{seen:?}"
    );
    // require without a CA encrypts and says it checked nothing.
    let seen = PgStore::inspect(&url("127.0.0.1", &pg, "sslmode=require"))?;
    ensure!(
        seen.encrypted == Some(true) && seen.encryption.contains("not checked"),
        "{seen:?}"
    );

    let err = error_of(PgStore::inspect(&url("127.0.0.1", &pg, "sslmode=disable")))?;
    ensure!(
        err.contains("no encryption") && err.contains("sslmode=verify-full"),
        "{err}"
    );
    Ok(())
}

/// `init --store URL` writes `[store] url`; `validate` says the connection
/// is encrypted and checked; `serve` keeps an agent's samples in
/// PostgreSQL.
#[test]
fn init_with_a_store_url_makes_a_collector_on_postgres() -> Result<()> {
    let pg = Cluster::start_tls()?;
    let ca = pg
        .ca_pem()
        .context("a TLS cluster has a CA")?
        .display()
        .to_string();
    let full = url(
        "127.0.0.1",
        &pg,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let mut c = Collector::init_with(&["--store", &full])?;
    let written = std::fs::read_to_string(&c.config)?;
    let cfg: toml::Table = toml::from_str(&written)?;
    ensure!(
        cfg.get("store")
            .and_then(|s| s.get("url"))
            .and_then(|u| u.as_str())
            == Some(&full),
        "{written}"
    );
    c.write_inventory(
        &Inventory::new("10s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    let v = c.validate()?;
    let out = text(&v);
    ensure!(v.status.success(), "{out}");
    ensure!(
        out.contains(&format!(
            "PostgreSQL at postgres@127.0.0.1:{}/siaga",
            pg.port()
        )) && out.contains("the connection encrypted (TLSv1.3")
            && out.contains("checked against sslrootcert and the host name"),
        "{out}"
    );

    c.serve()?;
    let agent = c.enroll_agent("a")?;
    let tls = agent.tls()?;
    let t = now_us() - 10_000_000;
    let samples: Vec<_> = (1..=3)
        .map(|i| icmp_sample(i, t + i as i64, "a-1"))
        .collect();
    let ack = runtime()?.block_on(async {
        let mut up = Uplink::open(&tls, &agent.id, "a").await?;
        up.send(samples).await
    })?;
    ensure!(ack.stored == 3, "{ack:?}");
    let in_pg = PgStore::open(&full)?.history("a-1", 0, 100)?;
    ensure!(
        in_pg.iter().map(|s| s.sample.seq).collect::<Vec<_>>() == [1, 2, 3],
        "{in_pg:?}"
    );
    let file = c.data_dir.join("collector.redb");
    ensure!(
        !file.exists(),
        "{} written beside PostgreSQL",
        file.display()
    );
    Ok(())
}

/// `init --store`: a malformed URL is refused naming the flag, and nothing
/// is written; a database that does not answer yet is written anyway with
/// a warning and the next step; a password keeps collector.toml private.
#[test]
fn init_refuses_a_malformed_store_url_and_warns_about_an_unreachable_one() -> Result<()> {
    let root = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let init = |dir: &std::path::Path, store: &str| -> Result<Output> {
        Ok(Command::new(bin("siaga-collector")?)
            .args(["init", "--dir"])
            .arg(dir)
            .args(["--listen", &listen, "--store", store])
            .output()?)
    };
    for (bad, why) in [
        (
            "postgres://siaga:s3cret@db:port/siaga",
            "not a PostgreSQL URL",
        ),
        ("mysql://siaga:s3cret@db/siaga", "not a PostgreSQL URL"),
        (
            "postgres://siaga:s3cret@db/siaga?sslmode=verify-full",
            "needs sslrootcert",
        ),
    ] {
        let dir = root.path().join("bad");
        let o = init(&dir, bad)?;
        let out = text(&o);
        ensure!(o.status.code() == Some(64), "{bad}: {:?}: {out}", o.status);
        ensure!(
            out.contains("--store: ") && out.contains(why),
            "{bad}: {out}"
        );
        ensure!(!out.contains("s3cret"), "the password is repeated: {out}");
        ensure!(!dir.exists(), "{bad}: {} written", dir.display());
    }

    let closed = free_port()?;
    let dir = root.path().join("later");
    let o = init(
        &dir,
        &format!("postgres://siaga:s3cret@127.0.0.1:{closed}/siaga"),
    )?;
    let out = text(&o);
    ensure!(o.status.success(), "{out}");
    ensure!(
        out.contains("warning: --store: PostgreSQL at siaga@127.0.0.1:")
            && out.contains("written with this URL anyway")
            && out.contains("siaga-collector validate --config"),
        "{out}"
    );
    ensure!(!out.contains("s3cret"), "the password is repeated: {out}");
    let config = dir.join("collector.toml");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config)?.permissions());
    ensure!(
        mode & 0o077 == 0,
        "collector.toml with a password is {mode:o}"
    );
    Ok(())
}
