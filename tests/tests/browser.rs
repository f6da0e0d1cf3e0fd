//! The web console in a real browser: Debian's headless Chromium driven
//! through chromedriver (WebDriver). The test starts chromedriver on a free
//! port and stops it, with the browser's profile directory, also when it
//! fails; a failing test leaves a screenshot and names it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use fantoccini::{Client, ClientBuilder, Locator};
use siaga_tests::harness::{
    Agent, Collector, Inventory, Siaga, free_port, runtime, secs, wait_until,
};
use siaga_tests::lab::Lab;

/// chromedriver, killed and reaped when dropped.
struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Result<Driver> {
        let port = free_port()?;
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting chromedriver (Debian packages chromium and chromium-driver; \
                 tests/run.sh installs them)",
            )?;
        let driver = Driver {
            child,
            port,
            profile: tempfile::Builder::new()
                .prefix("siaga-chromium-")
                .tempdir()?,
        };
        wait_until(secs(20), "chromedriver to listen", || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        })?;
        Ok(driver)
    }

    /// A headless Chromium session. The collector's certificate is issued
    /// by its own CA, which this fresh profile does not know: the session
    /// accepts it (what matters here is the page, the cookies and the forms).
    async fn browser(&self) -> Result<Client> {
        let mut caps = serde_json::Map::new();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-gpu".into(),
            "--window-size=390,844".into(),
            format!("--user-data-dir={}", self.profile.path().display()),
        ];
        args.push("--no-first-run".into());
        let mut options = serde_json::json!({ "args": args });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = "/usr/bin/chromium".into();
        }
        caps.insert("goog:chromeOptions".into(), options);
        caps.insert("acceptInsecureCerts".into(), true.into());
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .map_err(|e| anyhow!("starting a Chromium session: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a failing test's screenshot goes.
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"))
}

/// Runs `steps` in a fresh Chromium session; when they fail, saves a
/// screenshot named `name` and says where, with the page's address.
async fn in_browser<F>(driver: &Driver, name: &str, steps: F) -> Result<()>
where
    F: AsyncFnOnce(&Client) -> Result<()>,
{
    let b = driver.browser().await?;
    let result = steps(&b).await;
    if let Err(e) = &result {
        let shot = screenshot_path(name);
        match b.screenshot().await {
            Ok(png) if std::fs::write(&shot, &png).is_ok() => {
                eprintln!("screenshot of the failure: {}", shot.display());
            }
            _ => eprintln!("no screenshot of the failure could be taken"),
        }
        eprintln!("page at the failure: {:?}", b.current_url().await.ok());
        let _ = b.close().await;
        bail!("{e:#}");
    }
    b.close()
        .await
        .map_err(|e| anyhow!("closing the browser: {e}"))
}

/// Waits until `check` holds on the page as it is (no reload), up to `limit`.
async fn until_shown<F>(b: &Client, limit: Duration, what: &str, mut check: F) -> Result<()>
where
    F: AsyncFnMut(&Client) -> Result<bool>,
{
    let end = std::time::Instant::now() + limit;
    loop {
        if check(b).await.unwrap_or(false) {
            return Ok(());
        }
        if std::time::Instant::now() > end {
            bail!("{what}: not shown within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn text_of(b: &Client, css: &str) -> Result<String> {
    b.find(Locator::Css(css))
        .await
        .map_err(|e| anyhow!("{css}: {e}"))?
        .text()
        .await
        .map_err(|e| anyhow!("{css}: {e}"))
}

async fn log_in(b: &Client, base: &str, name: &str, password: &str) -> Result<()> {
    b.goto(&format!("{base}/masuk")).await?;
    b.find(Locator::Css("#nama")).await?.send_keys(name).await?;
    b.find(Locator::Css("#sandi"))
        .await?
        .send_keys(password)
        .await?;
    b.find(Locator::Css("form.masuk button[type=submit]"))
        .await?
        .click()
        .await?;
    Ok(())
}

async fn path_of(b: &Client) -> Result<String> {
    Ok(b.current_url().await?.path().to_string())
}

/// The steps a person takes; any failure is the test's.
async fn steps(b: &Client, base: &str) -> Result<()> {
    // A wrong password: the form again, with the message.
    log_in(b, base, "hd", "bukan-sandinya").await?;
    // The click returns before the answer (a password check takes a while).
    let msg = b
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("p.pesan"))
        .await?
        .text()
        .await?;
    ensure!(msg == "Nama pengguna atau kata sandi salah.", "{msg:?}");
    ensure!(path_of(b).await? == "/masuk");
    // The right one: the board, both OPDs, worst first.
    log_in(b, base, "hd", "rahasia-helpdesk-1").await?;
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("ul.opd"))
        .await?;
    ensure!(path_of(b).await? == "/papan");
    let title = text_of(b, "header h1").await?;
    ensure!(title == "Siaga · Papan status", "{title:?}");
    let opds = b.find_all(Locator::Css("ul.opd li")).await?;
    let mut ids = Vec::new();
    for o in &opds {
        ids.push(o.attr("data-opd").await?.unwrap_or_default());
    }
    ensure!(ids == ["dinkes", "dishub"], "{ids:?}");
    let unknown = text_of(b, "li[data-opd=dinkes] dd.unknown").await?;
    ensure!(unknown == "1", "{unknown:?}");
    // The session cookie is not readable by scripts (HttpOnly).
    let seen = b.execute("return document.cookie", vec![]).await?;
    ensure!(seen == "", "document.cookie shows {seen}");
    // Keluar: back to the login page, and the board is closed.
    b.find(Locator::Css("header form button"))
        .await?
        .click()
        .await?;
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form.masuk"))
        .await?;
    b.goto(&format!("{base}/papan")).await?;
    ensure!(
        path_of(b).await? == "/masuk",
        "the board after logout: {}",
        b.current_url().await?
    );
    Ok(())
}

#[test]
fn a_person_logs_in_in_chromium_sees_the_board_and_logs_out() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("10s")
            .opd("dinkes")
            .opd("dishub")
            .device("dinkes-sw1", "dinkes", "127.0.0.1")
            .device("dishub-sw1", "dishub", "127.0.0.2"),
    )?;
    c.enable_web()?;
    let root = c.enroll_user("root", "admin")?;
    c.enroll_user("hd", "helpdesk")?;
    c.serve()?;
    let out = root.run_stdin(&["user", "passwd", "hd"], "rahasia-helpdesk-1\n")?;
    ensure!(out.status.success(), "{out:?}");
    let base = format!("https://127.0.0.1:{}", c.web_addr()?.port());

    let driver = Driver::start()?;
    runtime()?.block_on(in_browser(
        &driver,
        "a_person_logs_in_in_chromium",
        async |b: &Client| steps(b, &base).await,
    ))
}

/// The device state `siaga devices --json` shows.
fn state(siaga: &Siaga, device: &str) -> Result<String> {
    Ok(siaga
        .devices()?
        .iter()
        .find(|d| d["id"] == device)
        .and_then(|d| d["state"].as_str())
        .unwrap_or_default()
        .to_string())
}

#[test]
fn a_device_going_down_shows_on_the_open_board_and_its_page_draws_its_round_trips() -> Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n\n\
         [[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\nkind = \"switch\"\n\
         address = \"{}\"\n",
        lab.addr("sw1")?
    ))?;
    c.enable_web()?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let root = c.enroll_user("root", "admin")?;
    let siaga = c.enroll_user("hd", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    let out = root.run_stdin(&["user", "passwd", "hd"], "rahasia-helpdesk-1\n")?;
    ensure!(out.status.success(), "{out:?}");
    wait_until(secs(60), "dinkes-sw1 up", || {
        Ok(state(&siaga, "dinkes-sw1")? == "up")
    })?;
    let base = format!("https://127.0.0.1:{}", c.web_addr()?.port());

    let driver = Driver::start()?;
    runtime()?.block_on(in_browser(
        &driver,
        "a_device_going_down_shows_on_the_open_board",
        async |b: &Client| {
            log_in(b, &base, "hd", "rahasia-helpdesk-1").await?;
            b.wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("li[data-opd=dinkes] dd.up"))
                .await?;
            let up = text_of(b, "li[data-opd=dinkes] dd.up").await?;
            ensure!(up == "1", "up: {up:?}");
            // A mark on this page: gone if the page were loaded again.
            b.execute("window.siagaTanda = 'sama'; return null", vec![])
                .await?;
            // The device stops answering.
            lab.set_loss("sw1", 100)?;
            until_shown(b, Duration::from_secs(60), "the device down", async |b| {
                Ok(text_of(b, "li[data-opd=dinkes] dd.down").await? == "1")
            })
            .await?;
            let mark = b
                .execute("return window.siagaTanda || null", vec![])
                .await?;
            ensure!(mark == "sama", "the board was loaded again: {mark}");
            let up = text_of(b, "li[data-opd=dinkes] dd.up").await?;
            ensure!(up == "0", "up: {up:?}");
            // Its OPD's page, then its own: the last hour's round trips drawn.
            b.find(Locator::Css("li[data-opd=dinkes] h2 a"))
                .await?
                .click()
                .await?;
            b.wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("tr[data-perangkat=dinkes-sw1] a"))
                .await?
                .click()
                .await?;
            b.wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("nav.rentang"))
                .await?;
            ensure!(path_of(b).await? == "/perangkat/dinkes-sw1");
            b.find(Locator::LinkText("1 jam")).await?.click().await?;
            let rtt = b
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("figure.grafik svg"))
                .await?;
            let points: usize = rtt
                .attr("data-titik")
                .await?
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            ensure!(points > 0, "the RTT chart has no points");
            let line = b
                .find(Locator::Css("figure.grafik svg path.garis"))
                .await?
                .attr("d")
                .await?
                .unwrap_or_default();
            ensure!(line.starts_with('M'), "line {line:?}");
            // At a phone's width the chart fits the window: no sideways scrolling.
            let fit = b
                .execute(
                    "var w = document.documentElement.clientWidth; \
                     var c = document.querySelector('figure.grafik svg').getBoundingClientRect(); \
                     return [c.width, c.right, w, document.documentElement.scrollWidth];",
                    vec![],
                )
                .await?;
            let n = |i: usize| fit[i].as_f64().unwrap_or(0.0);
            ensure!(
                n(0) > 200.0 && n(1) <= n(2) && n(3) <= n(2),
                "chart width, right edge, window width, page width: {fit}"
            );
            Ok(())
        },
    ))
}
