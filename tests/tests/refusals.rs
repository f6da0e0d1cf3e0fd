//! Configuration that cannot lie, refused with file, line and exit 64: the
//! `siaga` CLI with a plaintext collector URL, an agent whose certificate
//! names another agent, two user files for one person (at `validate` and at
//! `reload`); `validate` lists every error of one run, not only the first.

use std::net::TcpListener;
use std::process::{Command, Output};

use anyhow::{Result, ensure};
use siaga_tests::harness::*;

#[test]
fn the_cli_refuses_a_plaintext_collector_url_and_sends_nothing() -> Result<()> {
    let mut c = Collector::init()?;
    let budi = c.enroll_user("budi", "helpdesk")?;
    // Something listening where the URL points: it must hear nothing.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    set_toml(
        &budi.config,
        "collector",
        format!("http://127.0.0.1:{port}").into(),
    )?;
    let o = budi.run(&["agents"])?;
    let said = text(&o);
    ensure!(o.status.code() == Some(64), "exit {:?}: {said}", o.status);
    ensure!(
        said.contains(&format!(
            "collector: \"http://127.0.0.1:{port}\" is not an https:// URL; the collector speaks TLS only: write collector = \"https://127.0.0.1:{port}\""
        )),
        "{said}"
    );
    ensure!(
        said.contains(&budi.config.display().to_string()),
        "the error names the file: {said}"
    );
    ensure!(
        listener.accept().is_err(),
        "the CLI connected to the plaintext URL"
    );
    Ok(())
}

#[test]
fn agent_validate_refuses_a_certificate_that_names_another_agent() -> Result<()> {
    let mut c = Collector::init()?;
    let a = c.enroll_agent("dinkes")?;
    let b = c.enroll_agent("bappeda")?;
    let validate = |cfg: &AgentConfig| -> Result<Output> {
        Ok(Command::new(bin("siaga-agent")?)
            .args(["validate", "--config", &cfg.path.to_string_lossy()])
            .output()?)
    };
    let ok = validate(&a)?;
    ensure!(ok.status.success(), "{}", text(&ok));
    // Agent a's configuration with agent b's certificate and key.
    a.set("tls.cert", b.cert.to_string_lossy().to_string())?;
    a.set("tls.key", b.key.to_string_lossy().to_string())?;
    let o = validate(&a)?;
    let said = text(&o);
    ensure!(o.status.code() == Some(64), "exit {:?}: {said}", o.status);
    let line = std::fs::read_to_string(&a.path)?
        .lines()
        .position(|l| l.trim_start().starts_with("cert"))
        .map_or(0, |i| i + 1);
    ensure!(
        said.contains(&format!("{}:{line}: tls.cert: ", a.path.display()))
            && said.contains(&format!("names siaga://agent/bappeda/{}", b.id))
            && said.contains(&format!("not this agent (siaga://agent/dinkes/{})", a.id)),
        "{said}"
    );
    // Its own certificate with b's key.
    a.set("tls.cert", a.cert.to_string_lossy().to_string())?;
    let o = validate(&a)?;
    let said = text(&o);
    ensure!(
        o.status.code() == Some(64)
            && said.contains("tls.key: ")
            && said.contains("does not belong to the certificate"),
        "{said}"
    );
    Ok(())
}

#[test]
fn two_user_files_for_one_person_are_refused_by_validate_and_reload() -> Result<()> {
    let mut c = Collector::init()?;
    let _budi = c.enroll_user("budi", "helpdesk")?;
    let _root = c.enroll_user("root", "admin")?;
    c.serve()?;
    let users = c.dir().join("users");
    let copy = users.join("budi-lama.toml");
    std::fs::write(
        &copy,
        "# an old copy\nname = \"budi\"\nroles = [\"admin\"]\n",
    )?;
    for o in [c.validate()?, c.reload()?] {
        let said = text(&o);
        ensure!(o.status.code() == Some(64), "exit {:?}: {said}", o.status);
        // Read in name order: budi-lama.toml first, budi.toml is the second.
        ensure!(
            said.contains(&format!(
                "{}:2: name: user \"budi\" is already defined in {}",
                users.join("budi.toml").display(),
                copy.display()
            )),
            "{said}"
        );
    }
    ensure!(c.stop(), "the collector did not stop cleanly");
    Ok(())
}

#[test]
fn a_person_held_to_an_opd_must_name_a_real_one_at_enroll_validate_and_reload() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(&Inventory::new("10s").opd("dinkes").opd("dishub"))?;
    // enroll: an OPD not in the inventory, and a pemohon without an OPD.
    let (dir, out) = (c.dir(), c.root().join("u-opd"));
    let (dir, out) = (dir.to_string_lossy(), out.to_string_lossy());
    let enroll_pemohon = |opd: &[&str]| {
        let mut args = vec![
            "enroll", "user", "--dir", &dir, "--name", "opd", "--role", "pemohon", "--out", &out,
        ];
        args.extend_from_slice(opd);
        c.cmd(&args)
    };
    let o = enroll_pemohon(&["--opd", "dinsos"])?;
    let said = text(&o);
    ensure!(!o.status.success(), "an unknown OPD was accepted: {said}");
    ensure!(
        said.contains("--opd \"dinsos\" is not an OPD of") && said.contains("dinkes, dishub"),
        "{said}"
    );
    let o = enroll_pemohon(&[])?;
    let said = text(&o);
    ensure!(!o.status.success(), "a pemohon without an OPD: {said}");
    ensure!(said.contains("--opd is needed"), "{said}");
    // A province role needs none; a pemohon with a real OPD is enrolled.
    c.enroll_user("hd", "helpdesk")?;
    c.enroll_user_in("opd", "pemohon", "dinkes")?;
    let users = c.dir().join("users");
    let file = std::fs::read_to_string(users.join("opd.toml"))?;
    ensure!(file.contains("opd = \"dinkes\""), "{file}");
    ensure!(c.validate()?.status.success(), "validate of good users");
    c.serve()?;
    // A file edited to an OPD that does not exist: named with its line.
    std::fs::write(
        users.join("opd.toml"),
        file.replace("\"dinkes\"", "\"dinsos\""),
    )?;
    for o in [c.validate()?, c.reload()?] {
        let said = text(&o);
        ensure!(o.status.code() == Some(64), "exit {:?}: {said}", o.status);
        let line = file
            .lines()
            .position(|l| l.starts_with("opd ="))
            .map_or(0, |i| i + 1);
        ensure!(
            said.contains(&format!(
                "{}:{line}: opd: \"dinsos\" is not an OPD of the inventory",
                users.join("opd.toml").display()
            )),
            "{said}"
        );
    }
    ensure!(c.stop(), "the collector did not stop cleanly");
    Ok(())
}

#[test]
fn a_user_file_naming_a_role_the_sop_has_not_is_refused_by_enroll_validate_and_reload() -> Result<()>
{
    let mut c = Collector::init()?;
    c.write_inventory(&Inventory::new("10s").opd("dinkes"))?;
    let (dir, out) = (c.dir(), c.root().join("u-role"));
    let (dir, out) = (dir.to_string_lossy(), out.to_string_lossy());
    let o = c.cmd(&[
        "enroll", "user", "--dir", &dir, "--name", "aud", "--role", "auditor", "--out", &out,
    ])?;
    let said = text(&o);
    ensure!(!o.status.success(), "an unknown role was enrolled: {said}");
    ensure!(said.contains("--role \"auditor\" is not a role"), "{said}");
    c.enroll_user("hd", "helpdesk")?;
    ensure!(c.validate()?.status.success(), "validate of good users");
    c.serve()?;
    // A file edited by hand to a role the SOP file does not define.
    let users = c.dir().join("users");
    let file = std::fs::read_to_string(users.join("hd.toml"))?;
    let edited = file.replace(
        "roles = [\"helpdesk\"]",
        "roles = [\"helpdesk\", \"auditor\"]",
    );
    ensure!(edited != file, "{file}");
    std::fs::write(users.join("hd.toml"), &edited)?;
    let line = edited
        .lines()
        .position(|l| l.starts_with("roles ="))
        .map_or(0, |i| i + 1);
    for o in [c.validate()?, c.reload()?] {
        let said = text(&o);
        ensure!(o.status.code() == Some(64), "exit {:?}: {said}", o.status);
        ensure!(
            said.contains(&format!(
                "{}:{line}: roles: `auditor` is not a role (",
                users.join("hd.toml").display()
            )),
            "{said}"
        );
    }
    ensure!(c.stop(), "the collector did not stop cleanly");
    Ok(())
}

#[test]
fn validate_lists_every_error_it_finds_with_file_and_line() -> Result<()> {
    let c = Collector::init()?;
    // Two files broken at once: a device address in the inventory and the
    // SOP file's syntax. One run must name both (it used to stop at the first).
    c.write_inventory_text(
        "interval = \"10s\"\n[[opd]]\nid = \"dinkes\"\n\n[[device]]\nid = \"d1\"\n\
         opd = \"dinkes\"\nkind = \"router\"\naddress = \"not-an-address\"\n",
    )?;
    let sop = c.dir().join("sop.toml");
    let mut rules = std::fs::read_to_string(&sop)?;
    let broken_line = rules.lines().count() + 1;
    rules.push_str("[[[ not toml\n");
    std::fs::write(&sop, rules)?;
    let o = c.validate()?;
    let said = text(&o);
    ensure!(o.status.code() == Some(64), "exit {:?}: {said}", o.status);
    ensure!(said.contains("2 errors"), "{said}");
    ensure!(said.contains("inventory.toml:9:"), "{said}");
    ensure!(said.contains(&format!("sop.toml:{broken_line}")), "{said}");
    Ok(())
}
