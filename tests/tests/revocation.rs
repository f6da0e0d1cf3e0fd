//! Revocation as an operator does it, with the real binaries: an agent's
//! certificates revoked by its id end its open stream within seconds; a
//! person revoked stays revoked through a backup's restore; serials are taken
//! only in the forms tools print; agent ids are unique; files written as
//! root never follow a symlink the service user planted.

use std::path::Path;
use std::process::Output;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use siaga_tests::harness::*;

/// `siaga-collector certs --json`: one object per line.
fn certs(c: &Collector) -> Result<Vec<Value>> {
    let o = c.cmd(&["certs", "--config", path_str(&c.config)?, "--json"])?;
    ensure!(o.status.success(), "certs: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| l.to_string()))
        .collect()
}

#[test]
fn revoke_cert_agent_cuts_that_agents_open_stream_within_seconds() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("1s")
            .opd("dinkes")
            .opd("bappeda")
            .device("dinkes-sw", "dinkes", "127.0.0.1")
            .device("bappeda-sw", "bappeda", "127.0.0.2"),
    )?;
    let root = c.enroll_user("root", "admin")?;
    c.serve()?;
    let mut dinkes = Agent::start(c.enroll_agent("dinkes")?)?;
    let mut bappeda = Agent::start(c.enroll_agent("bappeda")?)?;
    wait_until(secs(60), "both agents streaming samples", || {
        Ok(root.history("dinkes-sw")?.len() >= 2 && root.history("bappeda-sw")?.len() >= 2)
    })?;
    ensure!(agent_connected(&root, "dinkes-agent")? && agent_connected(&root, "bappeda-agent")?);

    // The ledger knows the agent's certificate; revoking by id needs no file.
    let listed = certs(&c)?;
    let dinkes_cert = listed
        .iter()
        .find(|e| e["kind"] == "agent" && e["name"] == "dinkes-agent")
        .with_context(|| format!("dinkes-agent in {listed:?}"))?;
    ensure!(dinkes_cert["opd"] == "dinkes" && dinkes_cert["state"] == "valid");

    let start = Instant::now();
    let o = c.cmd(&[
        "revoke-cert",
        "--config",
        path_str(&c.config)?,
        "--agent",
        "dinkes-agent",
        "--reason",
        "host stolen",
    ])?;
    ensure!(o.status.success(), "revoke-cert: {}", text(&o));
    ensure!(
        text(&o).contains(dinkes_cert["serial"].as_str().unwrap_or("?")),
        "{}",
        text(&o)
    );
    // Watched in the collector's log, not with calls to it: a call would
    // make it re-read the list itself; here only its own timer does.
    wait_until(secs(15), "the revoked agent's stream ended", || {
        Ok(c.log_tail(200)
            .contains("certificate revoked; ending its open stream"))
    })?;
    let cut = start.elapsed();
    ensure!(
        !agent_connected(&root, "dinkes-agent")?,
        "siaga agents shows it gone"
    );
    println!(
        "revoked agent's open stream ended {:.2} s after revoke-cert",
        cut.as_secs_f64()
    );

    // It stays out: it keeps trying and is refused; its samples stop while
    // the other OPD's agent goes on.
    let dinkes_before = root.history("dinkes-sw")?.len();
    let bappeda_before = root.history("bappeda-sw")?.len();
    wait_until(secs(30), "the other agent stores 3 more samples", || {
        Ok(root.history("bappeda-sw")?.len() >= bappeda_before + 3)
    })?;
    ensure!(
        agent_connected(&root, "bappeda-agent")?,
        "the other agent stays"
    );
    ensure!(
        !agent_connected(&root, "dinkes-agent")?,
        "the revoked agent got back in"
    );
    let dinkes_after = root.history("dinkes-sw")?.len();
    ensure!(
        dinkes_after == dinkes_before,
        "the revoked agent stored {} samples after its cut-off",
        dinkes_after - dinkes_before
    );
    ensure!(
        c.log_tail(400).contains("revoked certificate refused"),
        "{}",
        c.log_tail(40)
    );
    let state = certs(&c)?
        .into_iter()
        .find(|e| e["name"] == "dinkes-agent")
        .map(|e| e["state"].clone());
    ensure!(
        state
            .as_ref()
            .and_then(|s| s.as_str())
            .is_some_and(|s| s.starts_with("revoked")),
        "{state:?}"
    );
    dinkes.stop();
    ensure!(bappeda.stop(), "the other agent stops cleanly");
    Ok(())
}

#[test]
fn a_person_revoked_after_a_backup_stays_revoked_after_its_restore() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(&Inventory::new("10s").opd("dinkes"))?;
    let root = c.enroll_user("root", "admin")?;
    let budi = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    ensure!(budi.run(&["whoami"])?.status.success());
    let archive = c.root().join("before.tar");
    let o = c.cmd(&[
        "backup",
        "--out",
        path_str(&archive)?,
        "--user-config",
        path_str(&root.config)?,
    ])?;
    ensure!(o.status.success(), "backup: {}", text(&o));

    // budi's laptop is lost after the backup.
    let o = c.cmd(&[
        "revoke-cert",
        "--config",
        path_str(&c.config)?,
        "--name",
        "budi",
        "--reason",
        "laptop hilang",
    ])?;
    ensure!(o.status.success(), "revoke-cert: {}", text(&o));
    let o = budi.run(&["whoami"])?;
    ensure!(
        !o.status.success() && text(&o).contains("revoked"),
        "{}",
        text(&o)
    );

    ensure!(c.stop(), "the collector did not stop cleanly");
    let o = c.cmd(&[
        "restore",
        "--from",
        path_str(&archive)?,
        "--config",
        path_str(&c.config)?,
        "--force",
    ])?;
    ensure!(o.status.success(), "restore: {}", text(&o));
    let restore_said = text(&o);
    c.serve()?;
    let o = budi.run(&["whoami"])?;
    ensure!(
        !o.status.success() && text(&o).contains("revoked"),
        "budi works again after the restore: {}",
        text(&o)
    );
    ensure!(
        restore_said.contains("revocation list") && restore_said.contains("kept"),
        "{restore_said}"
    );
    ensure!(root.run(&["whoami"])?.status.success());
    Ok(())
}

#[test]
fn serials_only_in_the_forms_tools_print_and_known_to_the_ledger() -> Result<()> {
    let mut c = Collector::init()?;
    let budi = c.enroll_user("budi", "helpdesk")?;
    let config = path_str(&c.config)?.to_string();
    let list = c.data_dir.join("revoked.toml");
    let serial = certs(&c)?
        .into_iter()
        .find(|e| e["name"] == "budi")
        .and_then(|e| e["serial"].as_str().map(str::to_string))
        .context("budi's serial")?;
    // What the old normaliser turned into another serial and "revoked".
    let upper = serial.to_uppercase();
    for bad in [
        format!("serial={upper}"),
        format!("0x{upper}:"),
        "5A:B3:".into(),
        "xyz".into(),
        format!("0x0x{serial}"),
        String::new(),
    ] {
        let o = c.cmd(&["revoke-cert", "--config", &config, "--serial", &bad])?;
        ensure!(
            o.status.code() == Some(64) && text(&o).contains("not a serial number"),
            "{bad:?}: {:?} {}",
            o.status.code(),
            text(&o)
        );
        ensure!(!list.exists(), "{bad:?} revoked something");
    }
    // A well-formed serial the CA never issued: refused, unless said so loudly.
    let o = c.cmd(&["revoke-cert", "--config", &config, "--serial", "0x5AB3"])?;
    ensure!(
        o.status.code() == Some(64) && text(&o).contains("--unlisted"),
        "{}",
        text(&o)
    );
    ensure!(!list.exists());
    let o = c.cmd(&[
        "revoke-cert",
        "--config",
        &config,
        "--serial",
        "0x5AB3",
        "--unlisted",
    ])?;
    ensure!(
        o.status.success() && text(&o).contains("WARNING") && text(&o).contains("5ab3"),
        "{}",
        text(&o)
    );
    // budi's real serial in each accepted form is the same certificate.
    // As `openssl x509 -text` prints it: whole bytes, so a leading zero.
    let even = if upper.len() % 2 == 1 {
        format!("0{upper}")
    } else {
        upper.clone()
    };
    let colons = even
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    for form in [format!("0x{upper}"), colons, serial.clone()] {
        let o = c.cmd(&["revoke-cert", "--config", &config, "--serial", &form])?;
        ensure!(
            o.status.success() && text(&o).contains(&format!("revoked certificate {serial}")),
            "{form}: {}",
            text(&o)
        );
    }
    let t = std::fs::read_to_string(&list)?;
    ensure!(t.matches("[[revoked]]").count() == 2, "{t}");
    c.serve()?;
    let o = budi.run(&["whoami"])?;
    ensure!(
        !o.status.success() && text(&o).contains("revoked"),
        "{}",
        text(&o)
    );
    Ok(())
}

#[test]
fn agent_ids_are_unique_across_opds() -> Result<()> {
    let mut c = Collector::init()?;
    c.enroll_agent("dinkes")?;
    let out = c.root().join("again");
    for opd in ["dinkes", "bappeda"] {
        let o = c.cmd(&[
            "enroll",
            "agent",
            "--dir",
            path_str(&c.dir())?,
            "--opd",
            opd,
            "--id",
            "dinkes-agent",
            "--out",
            path_str(&out)?,
        ])?;
        ensure!(
            o.status.code() == Some(64) && text(&o).contains("already issued"),
            "{opd}: {}",
            text(&o)
        );
    }
    ensure!(!out.exists());
    Ok(())
}

#[test]
fn files_written_as_root_do_not_follow_a_planted_symlink() -> Result<()> {
    let mut c = Collector::init()?;
    c.enroll_user("budi", "helpdesk")?;
    let victim = c.root().join("root-only");
    std::fs::write(&victim, "root's file\n")?;
    let users = c.dir().join("users");
    std::fs::create_dir_all(&c.data_dir)?;
    // The temporary names the commands used before, planted by whoever owns
    // the directories.
    for link in [
        c.data_dir.join("revoked.toml.tmp"),
        users.join(".siti.toml.tmp"),
    ] {
        std::os::unix::fs::symlink(&victim, &link)?;
    }
    let o = c.cmd(&[
        "revoke-cert",
        "--config",
        path_str(&c.config)?,
        "--name",
        "budi",
    ])?;
    ensure!(o.status.success(), "revoke-cert: {}", text(&o));
    c.enroll_user("siti", "helpdesk")?;
    ensure!(std::fs::read_to_string(&victim)? == "root's file\n");
    ensure!(
        std::fs::read_to_string(c.data_dir.join("revoked.toml"))?.contains("siaga://user/budi")
    );
    Ok(())
}

#[test]
fn a_certificate_near_its_end_is_warned_of_and_renew_ends_the_warning() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(&Inventory::new("1s").opd("dinkes").device(
        "dinkes-sw",
        "dinkes",
        "127.0.0.1",
    ))?;
    let root = c.enroll_user("root", "admin")?;
    let cfg = c.enroll_agent("dinkes")?;
    let out = cfg.path.parent().context("agent directory")?.to_path_buf();
    let dir = c.dir();
    fn renew(c: &Collector, dir: &Path, out: &Path, days: &str) -> Result<Output> {
        let mut args = vec![
            "renew",
            "--dir",
            path_str(dir)?,
            "--agent",
            "dinkes-agent",
            "--out",
            path_str(out)?,
        ];
        if !days.is_empty() {
            args.extend(["--days", days]);
        }
        c.cmd(&args)
    }
    // A certificate with 10 days left, as an agent would have in 23 months.
    let o = renew(&c, &dir, &out, "10")?;
    ensure!(
        o.status.success() && text(&o).contains("earlier certificate"),
        "{}",
        text(&o)
    );
    let o = c.validate()?;
    ensure!(
        o.status.success()
            && text(&o).contains("agent dinkes-agent")
            && text(&o).contains("renew --agent dinkes-agent"),
        "{}",
        text(&o)
    );
    c.serve()?;
    let mut agent = Agent::start(cfg)?;
    wait_until(secs(60), "the agent connected", || {
        agent_connected(&root, "dinkes-agent")
    })?;
    let o = root.run(&["agents"])?;
    ensure!(
        o.status.success()
            && String::from_utf8_lossy(&o.stderr)
                .contains("certificate of agent dinkes-agent expires on")
            && String::from_utf8_lossy(&o.stderr).contains(" days)"),
        "{}",
        text(&o)
    );
    ensure!(agent.stop(), "the agent stops cleanly");
    // Renewed with the default lifetime: no more warning.
    let o = renew(&c, &dir, &out, "")?;
    ensure!(o.status.success(), "{}", text(&o));
    let o = c.validate()?;
    ensure!(
        o.status.success() && !text(&o).contains("warning"),
        "{}",
        text(&o)
    );
    Ok(())
}
