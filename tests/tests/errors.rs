//! Errors that say what to do, with the real binaries and certificates made
//! here: each TLS failure of the CLI and the agent is told in words with the
//! next step; the collector logs and counts the handshakes it refused; every
//! bad command line exits 64 with a sentence naming the flag and an example.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, anyhow, ensure};
use siaga_tests::harness::*;

/// A copy of the directory `siaga.toml` of `who` lives in, as `name`.
fn copy_of(who: &Siaga, root: &Path, name: &str) -> Result<Siaga> {
    let from = who.config.parent().ok_or_else(|| anyhow!("no dir"))?;
    let to = root.join(name);
    fs::create_dir_all(&to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(Siaga {
        config: to.join("siaga.toml"),
    })
}

fn dir_of(s: &Siaga) -> PathBuf {
    s.config.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A certificate for `name` signed by the collector's own CA, valid only
/// in 2020: expired long ago.
fn expired_user_cert(c: &Collector, name: &str, out: &Path) -> Result<()> {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType, date_time_ymd,
    };
    let ca_pem = fs::read_to_string(c.dir().join("ca.pem"))?;
    let ca_key = KeyPair::from_pem(&fs::read_to_string(c.dir().join("ca.key"))?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.subject_alt_names = vec![SanType::URI(format!("siaga://user/{name}").try_into()?)];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2020, 12, 31);
    let cert = p.signed_by(&key, &issuer)?;
    fs::write(out.join("user.pem"), cert.pem())?;
    fs::write(out.join("user.key"), key.serialize_pem())?;
    Ok(())
}

/// `siaga whoami` must fail and say every one of `words`.
fn refused_with(who: &Siaga, words: &[&str]) -> Result<String> {
    let o = who.run(&["whoami"])?;
    let t = text(&o);
    ensure!(!o.status.success(), "whoami succeeded: {t}");
    for w in words {
        ensure!(t.contains(w), "says {w:?}: {t}");
    }
    for raw in [
        "transport error",
        "BadSignature",
        "DecryptError",
        "AlertReceived",
    ] {
        ensure!(!t.contains(raw), "no raw {raw:?}: {t}");
    }
    Ok(t)
}

#[test]
fn tls_failures_say_what_to_do_and_the_collector_counts_its_refusals() -> Result<()> {
    let mut c = Collector::init()?;
    set_toml(&c.config, "metrics_listen", "127.0.0.1:0".into())?;
    c.write_inventory(&Inventory::new("1s").opd("dinkes").device(
        "dinkes-sw",
        "dinkes",
        "127.0.0.1",
    ))?;
    let budi = c.enroll_user("budi", "helpdesk")?;
    let lost = c.enroll_user("lost", "helpdesk")?;
    // Another collector: its CA, and a person enrolled there.
    let mut other = Collector::init()?;
    let stranger = other.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let root = c.root().to_path_buf();
    ensure!(budi.run(&["whoami"])?.status.success());

    // The person's own certificate expired: the collector refuses it.
    let old = copy_of(&budi, &root, "expired")?;
    expired_user_cert(&c, "budi", &dir_of(&old))?;
    refused_with(
        &old,
        &[
            "your certificate",
            "expired on 2020-12-31 07:00 WIB",
            "ask for a new one: siaga-collector renew",
            "--user budi",
        ],
    )?;

    // The collector refuses a certificate of another collector's CA.
    let foreign = copy_of(&stranger, &root, "foreign")?;
    fs::copy(c.dir().join("ca.pem"), dir_of(&foreign).join("ca.pem"))?;
    set_toml(
        &foreign.config,
        "collector",
        format!("https://{}", c.listen).into(),
    )?;
    refused_with(
        &foreign,
        &[
            "refused your certificate",
            "not signed by this collector's CA",
            "enroll user",
        ],
    )?;

    // The CA in siaga.toml did not sign the collector's certificate.
    let wrong_ca = copy_of(&budi, &root, "wrong-ca")?;
    fs::copy(other.dir().join("ca.pem"), dir_of(&wrong_ca).join("ca.pem"))?;
    refused_with(
        &wrong_ca,
        &[
            "not signed by the CA in siaga.toml",
            "copy ca.pem from the collector",
        ],
    )?;

    // The collector's certificate does not carry the name asked for.
    let wrong_name = copy_of(&budi, &root, "wrong-name")?;
    set_toml(
        &wrong_name.config,
        "server_name",
        "elsewhere.example".into(),
    )?;
    refused_with(
        &wrong_name,
        &[
            "not valid for the name \"elsewhere.example\"",
            "server_name",
        ],
    )?;

    // A revoked certificate: refused after the handshake, told by serial.
    let o = c.cmd(&[
        "revoke-cert",
        "--config",
        c.config.to_str().context("path")?,
        "--user",
        "lost",
        "--reason",
        "lost laptop",
    ])?;
    ensure!(o.status.success(), "revoke-cert: {}", text(&o));
    let pem = fs::read_to_string(dir_of(&lost).join("user.pem"))?;
    let serial = siaga_collector::revoke::serial_of(
        &siaga_collector::revoke::pem_to_der(&pem).map_err(|e| anyhow!(e))?,
    )
    .map_err(|e| anyhow!(e))?;
    wait_until(secs(10), "the revocation to be in force", || {
        Ok(!lost.run(&["whoami"])?.status.success())
    })?;
    refused_with(
        &lost,
        &[
            &format!("your certificate {serial} (siaga://user/"),
            "ask the collector's admin for a new one",
        ],
    )?;

    // The collector logged the refused handshakes with the peer and reason,
    // and counted each one by reason.
    let log = c.log_tail(400);
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS handshake refused"))
        .collect();
    ensure!(!refused.is_empty(), "a refused handshake is logged: {log}");
    ensure!(
        refused[0].contains("peer=127.0.0.1:") && refused[0].contains("expired"),
        "with the peer address and the reason: {}",
        refused[0]
    );
    ensure!(
        refused.len() <= 4,
        "at most one line per peer address and minute (a few if the test ran long): {refused:?}"
    );
    let addr = fs::read_to_string(c.data_dir.join("metrics.addr"))?;
    let m = http_get(addr.trim(), "/metrics")?;
    let count = |reason: &str| {
        metric_value_labelled(&m, "siaga_collector_tls_handshakes_refused_total", reason)
    };
    ensure!(
        count("expired") == Some(1.0),
        "the expired one counted: {m}"
    );
    ensure!(
        count("unknown_ca") == Some(1.0),
        "the foreign one counted: {m}"
    );
    ensure!(
        count("refused_by_client").is_some_and(|n| n >= 2.0),
        "the two the CLI refused counted: {m}"
    );
    ensure!(
        count("revoked") == Some(0.0),
        "revocation is not a handshake matter: {m}"
    );
    Ok(())
}

/// The value of `name{reason="REASON"}` in a Prometheus text.
fn metric_value_labelled(text: &str, name: &str, reason: &str) -> Option<f64> {
    let key = format!("{name}{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn the_agent_log_says_the_collector_is_not_signed_by_its_ca() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(&Inventory::new("1s").opd("dinkes").device(
        "dinkes-sw",
        "dinkes",
        "127.0.0.1",
    ))?;
    let cfg = c.enroll_agent("dinkes")?;
    let other = Collector::init()?;
    c.serve()?;
    fs::copy(other.dir().join("ca.pem"), &cfg.ca)?;
    let agent = Agent::start(cfg)?;
    wait_until(secs(30), "the agent to say why", || {
        Ok(agent
            .log_tail(50)
            .contains("not signed by the CA in agent.toml"))
    })?;
    let log = agent.log_tail(50);
    ensure!(log.contains("copy ca.pem from the collector"), "{log}");
    Ok(())
}

fn run_bin(name: &str, args: &[&str]) -> Result<Output> {
    Command::new(bin(name)?)
        .args(args)
        .stdin(Stdio::null())
        .env("SIAGA_CONFIG", "/nonexistent/siaga.toml")
        .output()
        .with_context(|| format!("running {name} {args:?}"))
}

#[test]
fn every_bad_command_line_exits_64_naming_the_flag_with_an_example() -> Result<()> {
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "siaga",
            &["history", "sw1", "--since", "lately"],
            &["--since", "e.g. 30m"],
        ),
        (
            "siaga",
            &["device", "sw1", "--since", "3 fortnights ago"],
            &["--since", "e.g. 30m"],
        ),
        (
            "siaga",
            &[
                "register",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
                "--format",
                "xlsx",
            ],
            &["--out", "e.g. --out register.xlsx"],
        ),
        (
            "siaga",
            &["register", "--from", "2026-11-30", "--to", "2026-11-01"],
            &[
                "--to 2026-11-01 is before --from 2026-11-30",
                "e.g. --from 2026-11-01",
            ],
        ),
        (
            "siaga",
            &["register", "--from", "01/11/2026", "--to", "2026-11-30"],
            &["--from", "e.g. 2026-12-04"],
        ),
        (
            "siaga",
            &[
                "ticket",
                "new",
                "--opd",
                "dinkes",
                "--letter-number",
                "1",
                "--letter-date",
                "04-12-2026",
                "--subject",
                "x",
            ],
            &["--letter-date", "YYYY-MM-DD, e.g. 2026-12-04"],
        ),
        ("siaga", &["tickets", "--no-such-flag"], &["--no-such-flag"]),
        (
            "siaga-collector",
            &["init", "--dir", "x", "--listen", "nowhere"],
            &["--listen", "e.g. 0.0.0.0:7443"],
        ),
        (
            "siaga-collector",
            &[
                "renew", "--dir", "x", "--user", "u", "--out", "y", "--days", "many",
            ],
            &["--days"],
        ),
        (
            "siaga-agent",
            &["run", "--no-such-flag"],
            &["--no-such-flag"],
        ),
    ];
    let mut failed = Vec::new();
    for (name, args, words) in table {
        let o = run_bin(name, args)?;
        let t = text(&o);
        let ok = o.status.code() == Some(64) && words.iter().all(|w| t.contains(w));
        if !ok {
            failed.push(format!("{name} {args:?} → {:?}: {t}", o.status.code()));
        }
    }
    ensure!(failed.is_empty(), "{}", failed.join("\n---\n"));
    // --help and --version are not errors.
    for name in ["siaga", "siaga-collector", "siaga-agent"] {
        for flag in ["--help", "--version"] {
            let o = run_bin(name, &[flag])?;
            ensure!(o.status.code() == Some(0), "{name} {flag}: {}", text(&o));
        }
    }
    Ok(())
}

#[test]
fn print_config_is_one_name_in_both_daemons() -> Result<()> {
    let agent = run_bin("siaga-agent", &["print-config"])?;
    let collector = run_bin("siaga-collector", &["print-config"])?;
    let old_name = run_bin("siaga-collector", &["gen-config"])?;
    for (what, o) in [
        ("siaga-agent print-config", &agent),
        ("siaga-collector print-config", &collector),
        ("siaga-collector gen-config", &old_name),
    ] {
        ensure!(
            o.status.success() && o.stdout.to_ascii_lowercase().starts_with(b"# siaga"),
            "{what}: {}",
            text(o)
        );
    }
    ensure!(
        collector.stdout == old_name.stdout,
        "gen-config is the old name of print-config"
    );
    Ok(())
}

#[test]
fn the_log_format_is_an_option_of_the_daemon_commands_only() -> Result<()> {
    // `--log-format` shapes what `serve` and `run` log; it was a global flag
    // that every other command listed in its --help and ignored.
    for (name, daemon, others) in [
        (
            "siaga-collector",
            "serve",
            &["validate", "init", "backup", "verify"][..],
        ),
        ("siaga-agent", "run", &["validate", "check"][..]),
    ] {
        let help = text(&run_bin(name, &[daemon, "--help"])?);
        ensure!(
            help.contains("--log-format"),
            "{name} {daemon} --help: {help}"
        );
        for cmd in others {
            let help = text(&run_bin(name, &[cmd, "--help"])?);
            ensure!(
                !help.contains("--log-format"),
                "{name} {cmd} --help: {help}"
            );
            let o = run_bin(name, &[cmd, "--log-format", "json"])?;
            ensure!(
                o.status.code() == Some(64) && text(&o).contains("--log-format"),
                "{name} {cmd} --log-format json: {:?} {}",
                o.status.code(),
                text(&o)
            );
        }
    }
    Ok(())
}
