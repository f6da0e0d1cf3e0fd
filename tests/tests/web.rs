//! The web console end to end: the admin sets passwords with `siaga user
//! passwd` (the password on standard input), people log in over HTTPS
//! with the collector's CA and read the Papan status of their scope.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, ensure};
use siaga_tests::harness::{Collector, Inventory, Siaga, http_get, runtime, set_toml};

/// A client that keeps cookies like a browser and does not follow redirects.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(c: &Collector) -> Result<Browser> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let addr = c.web_addr()?;
        let ca = reqwest::Certificate::from_pem(&std::fs::read(c.dir().join("ca.pem"))?)?;
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", addr)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Browser {
            client,
            base: format!("https://localhost:{}", addr.port()),
            cookies: HashMap::new(),
        })
    }

    /// Status, `Location` and body; cookies kept.
    async fn send(&mut self, req: reqwest::RequestBuilder) -> Result<(u16, String, String)> {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let r = req.header("cookie", cookie.join("; ")).send().await?;
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str()?;
            let (k, v) = c
                .split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .ok_or_else(|| anyhow!("bad Set-Cookie {c}"))?;
            ensure!(
                c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Strict"),
                "cookie without its flags: {c}"
            );
            if c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.into(), v.into());
            }
        }
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        Ok((status, location, r.text().await?))
    }

    async fn get(&mut self, path: &str) -> Result<(u16, String, String)> {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// Logs in through the form; the status of the answer to the POST.
    async fn log_in(&mut self, name: &str, password: &str) -> Result<(u16, String, String)> {
        let (status, _, page) = self.get("/masuk").await?;
        ensure!(status == 200, "GET /masuk: {status}");
        let at = page
            .find("name=\"csrf\" value=\"")
            .context("no CSRF field on the login page")?
            + "name=\"csrf\" value=\"".len();
        let csrf = page[at..].split('"').next().unwrap_or_default().to_string();
        ensure!(csrf.len() == 64, "CSRF token {csrf:?}");
        let body = format!("nama={name}&sandi={password}&csrf={csrf}");
        let req = self
            .client
            .post(format!("{}/masuk", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }
}

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
