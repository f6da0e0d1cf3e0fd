//! The web console end to end: the admin sets passwords with `siaga user
//! passwd` (the password on standard input), people log in over HTTPS
//! with the collector's CA and read the Papan status of their scope.

use anyhow::{Result, ensure};
use siaga_tests::harness::{Collector, Inventory, Siaga, http_get, runtime, set_toml};
use siaga_tests::web::Browser;

fn passwd(who: &Siaga, name: &str, password: &str) -> Result<std::process::Output> {
    who.run_stdin(&["user", "passwd", name], &format!("{password}\n"))
}

#[test]
fn passwords_from_the_cli_then_login_and_the_board_of_each_scope() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("dinkes")
            .opd("dishub")
            .device("dinkes-sw1", "dinkes", "127.0.0.1")
            .device("dishub-sw1", "dishub", "127.0.0.2"),
    )?;
    set_toml(&c.config, "metrics_listen", "127.0.0.1:0".into())?;
    c.enable_web()?;
    let root = c.enroll_user("root", "admin")?;
    c.enroll_user("hd", "helpdesk")?;
    let opd = c.enroll_user_in("opd", "pemohon", "dinkes")?;
    c.serve()?;

    // Too short: refused before anything is sent, exit 64.
    let out = passwd(&root, "hd", "pendek")?;
    ensure!(out.status.code() == Some(64), "{out:?}");
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("shorter than 10 characters"),
        "{out:?}"
    );
    let out = passwd(&root, "hd", "rahasia-helpdesk-1")?;
    ensure!(out.status.success(), "{out:?}");
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == "hd: web console password set",
        "{out:?}"
    );
    // A pemohon sets their own password, not another's.
    let out = passwd(&opd, "hd", "rahasia-pemohon-1")?;
    ensure!(!out.status.success(), "{out:?}");
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("only the admin"),
        "{out:?}"
    );
    let out = passwd(&opd, "opd", "rahasia-pemohon-1")?;
    ensure!(out.status.success(), "{out:?}");
    // A second factor: the admin's own, shown as URI and terminal QR code;
    // a pemohon may not enrol another's.
    let out = root.run(&["user", "totp", "root"])?;
    ensure!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    ensure!(
        shown.contains("otpauth://totp/Siaga:root?secret=") && shown.contains('█'),
        "{shown}"
    );
    let out = opd.run(&["user", "totp", "hd"])?;
    ensure!(!out.status.success(), "{out:?}");
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("only the admin"),
        "{out:?}"
    );

    runtime()?.block_on(async {
        let mut b = Browser::new(&c)?;
        let (status, _, page) = b.log_in("hd", "salah-sekali-1").await?;
        ensure!(status == 401, "{status}: {page}");
        ensure!(page.contains("Nama pengguna atau kata sandi salah."));
        let (status, location, _) = b.log_in("hd", "rahasia-helpdesk-1").await?;
        ensure!(
            (status, location.as_str()) == (303, "/papan"),
            "{status} {location}"
        );
        let (status, _, board) = b.get("/papan").await?;
        ensure!(status == 200, "{status}");
        ensure!(
            board.contains("OPD dinkes") && board.contains("OPD dishub"),
            "{board}"
        );

        let mut p = Browser::new(&c)?;
        let (status, _, _) = p.log_in("opd", "rahasia-pemohon-1").await?;
        ensure!(status == 303, "{status}");
        let (_, _, board) = p.get("/papan").await?;
        ensure!(
            board.contains("OPD dinkes") && !board.contains("dishub"),
            "{board}"
        );
        Ok(())
    })?;
    // Counted per outcome: one wrong password, two logins.
    let metrics_addr = std::fs::read_to_string(c.data_dir.join("metrics.addr"))?;
    let text = http_get(metrics_addr.trim(), "/metrics")?;
    for (outcome, n) in [("failed", 1), ("ok", 2)] {
        let line = format!("siaga_collector_web_logins_total{{outcome=\"{outcome}\"}} {n}");
        ensure!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // Logins are in the API audit trail.
    let trail = std::fs::read_to_string(c.data_dir.join("api-audit.jsonl"))?;
    ensure!(
        trail.contains("\"rpc\":\"web/login\",\"user\":\"hd\""),
        "{trail}"
    );
    ensure!(trail.contains("/siaga.v1.Users/SetPassword"), "{trail}");
    ensure!(trail.contains("/siaga.v1.Users/EnrollTotp"), "{trail}");
    Ok(())
}
