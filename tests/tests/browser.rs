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
    Agent, Collector, Inventory, device_state, free_port, runtime, secs, wait_until,
};
use siaga_tests::lab::Lab;
use siaga_tests::office::{OFFICE_USERS, Office, letter_date, opened_ticket};
use siaga_tests::web::Browser;

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
        // A phone's screen: the window alone cannot be narrower than
        // Chromium's minimum (500 px), the emulated screen can.
        let mut options = serde_json::json!({
            "args": args,
            "mobileEmulation": {
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 1.0, "touch": false }
            },
        });
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

/// With `SIAGA_SCREENSHOTS=DIR` (a path from the workspace root, e.g.
/// `docs`), saves the page as it is now as `DIR/NAME.png`: how the README's
/// pictures of the console are made. Off by default, so a test run writes
/// nothing in the tree.
async fn keep_screenshot(b: &Client, name: &str) -> Result<()> {
    let Some(dir) = std::env::var_os("SIAGA_SCREENSHOTS") else {
        return Ok(());
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
        .join(format!("{name}.png"));
    let png = b
        .screenshot()
        .await
        .map_err(|e| anyhow!("a screenshot for {name}: {e}"))?;
    std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))
}

/// Runs `steps` in a fresh Chromium session; when they fail, saves a
/// screenshot named `name` and says where, with the page's address.
async fn in_browser<F>(driver: &Driver, name: &str, steps: F) -> Result<()>
where
    F: AsyncFnOnce(&Client) -> Result<()>,
{
    let b = driver.browser().await?;
    let result = steps(&b).await;
    finish(b, name, result).await
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
        Ok(device_state(&siaga, "dinkes-sw1")? == "up")
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
            keep_screenshot(b, "konsol-papan").await?;
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
            // The period links swap the chart area in place (htmx): mark the
            // page and the charts drawn now, then wait for charts without
            // the mark, on the same page.
            b.execute(
                "window.siagaTanda = 'sama'; \
                 document.querySelectorAll('figure.grafik svg') \
                   .forEach(function (s) { s.setAttribute('data-lama', '1'); });",
                vec![],
            )
            .await?;
            b.find(Locator::LinkText("1 jam")).await?.click().await?;
            let rtt = b
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("figure.grafik svg:not([data-lama])"))
                .await?;
            let mark = b
                .execute("return window.siagaTanda || null", vec![])
                .await?;
            ensure!(mark == "sama", "the device page was loaded again: {mark}");
            ensure!(
                b.current_url().await?.query() == Some("rentang=1j"),
                "the period's address was not pushed"
            );
            let points: usize = rtt
                .attr("data-titik")
                .await?
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            ensure!(points > 0, "the RTT chart has no points");
            let line = rtt
                .find(Locator::Css("path.garis"))
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
                n(2) == 390.0 && n(0) > 200.0 && n(1) <= n(2) && n(3) <= n(2),
                "chart width, right edge, window width, page width: {fit}"
            );
            Ok(())
        },
    ))
}

/// Ends a browser session after `result`: on a failure, a screenshot
/// named `name` first (and where it is), then the failure.
async fn finish(b: Client, name: &str, result: Result<()>) -> Result<()> {
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

/// An office (one person per role; the pemohon `opd` works for dinkes) with
/// the OPDs dinkes and dishub and the web console, and the passwords of
/// `people` set by the admin with `siaga user passwd`.
fn web_office(people: &[(&str, &str)]) -> Result<(Office, String)> {
    let c = Collector::init()?;
    c.write_inventory(&Inventory::new("10s").opd("dinkes").opd("dishub"))?;
    c.enable_web()?;
    let o = Office::serve(c, &OFFICE_USERS)?;
    for (name, password) in people {
        let out = o
            .user("root")?
            .run_stdin(&["user", "passwd", name], &format!("{password}\n"))?;
        ensure!(out.status.success(), "passwd {name}: {out:?}");
    }
    let base = format!("https://127.0.0.1:{}", o.collector.web_addr()?.port());
    Ok((o, base))
}

/// A letter ticket of `opd` entered by the helpdesk with the CLI; its number.
fn letter_of(o: &Office, opd: &str, number: &str) -> Result<String> {
    let date = letter_date();
    opened_ticket(&o.ok(
        "hd",
        &[
            "ticket",
            "new",
            "--opd",
            opd,
            "--letter-number",
            number,
            "--letter-date",
            &date,
            "--subject",
            "Internet putus",
        ],
    )?)
}

/// A client of the console outside the browser (the collector's CA), that
/// sends `cookie` and does not follow redirects.
fn plain_client(o: &Office) -> Result<(reqwest::Client, String)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addr = o.collector.web_addr()?;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(o.collector.dir().join("ca.pem"))?)?;
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    Ok((client, format!("https://localhost:{}", addr.port())))
}

async fn wait_for(b: &Client, css: &str) -> Result<fantoccini::elements::Element> {
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .map_err(|e| anyhow!("waiting for {css}: {e}"))
}

/// At a phone's width (the driver's window is 390 px) the header keeps
/// the user name and "Keluar" on the title's row, and nothing scrolls
/// sideways.
async fn header_fits_a_phone(b: &Client) -> Result<()> {
    let box_of = b
        .execute(
            "var t = document.querySelector('header h1').getBoundingClientRect(); \
             var k = document.querySelector('header form button').getBoundingClientRect(); \
             var u = document.querySelector('header form span').getBoundingClientRect(); \
             return [t.top, t.bottom, k.top, k.right, u.top, \
                     document.documentElement.clientWidth, document.documentElement.scrollWidth];",
            vec![],
        )
        .await?;
    let n = |i: usize| box_of[i].as_f64().unwrap_or(f64::NAN);
    let (title_top, title_bottom) = (n(0), n(1));
    ensure!(n(5) == 390.0, "the window is not a phone's: {box_of}");
    ensure!(
        n(2) < title_bottom && n(4) < title_bottom && n(2) >= title_top - 20.0,
        "Keluar or the name is under the title (title top, bottom, Keluar top, right, \
         name top, width, page width): {box_of}"
    );
    ensure!(
        n(3) <= n(5) && n(6) <= n(5),
        "the header does not fit the width: {box_of}"
    );
    Ok(())
}

/// The Kepala Dinas's steps: the queue, the ticket, the dispose form, the
/// message; then the session cookie, kept, and logout.
async fn kadis_disposes(b: &Client, base: &str, id: &str) -> Result<String> {
    log_in(b, base, "kadis", "rahasia-kadis-123").await?;
    wait_for(b, "ul.opd").await?;
    b.find(Locator::Css("a[href='/tiket']"))
        .await?
        .click()
        .await?;
    let row = format!("#saya tr[data-tiket='{id}'] a");
    wait_for(b, &row).await?.click().await?;
    wait_for(b, "form#disposisi").await?;
    ensure!(path_of(b).await? == format!("/tiket/{id}"));
    keep_screenshot(b, "konsol-tiket").await?;
    header_fits_a_phone(b).await?;
    b.find(Locator::Css("#catatan"))
        .await?
        .send_keys("segera ditangani")
        .await?;
    b.find(Locator::Css("form#disposisi button[type=submit]"))
        .await?
        .click()
        .await?;
    let said = wait_for(b, "p.ok").await?.text().await?;
    ensure!(said.contains("langkah 3"), "{said:?}");
    let now = text_of(b, "#langkah").await?;
    // The SOP file's name of the role, as the documents print it.
    ensure!(
        now.starts_with("3 · Kepala Bidang Aplikasi dan Informatika"),
        "{now:?}"
    );
    let session = b
        .get_named_cookie("siaga_sesi")
        .await
        .map_err(|e| anyhow!("the session cookie: {e}"))?
        .value()
        .to_string();
    b.find(Locator::Css("header form button"))
        .await?
        .click()
        .await?;
    wait_for(b, "form.masuk").await?;
    Ok(session)
}

#[test]
fn the_kepala_dinas_disposes_in_chromium_and_the_cli_shows_the_step_done_by_kadis() -> Result<()> {
    let (o, base) = web_office(&[("kadis", "rahasia-kadis-123")])?;
    let id = letter_of(&o, "dinkes", "005/1/DINKES")?;
    o.ok("opd", &["ticket", "dispose", &id])?;
    let driver = Driver::start()?;
    let session = runtime()?.block_on(async {
        let b = driver.browser().await?;
        let mut session = String::new();
        let result = kadis_disposes(&b, &base, &id).await.map(|s| session = s);
        finish(b, "the_kepala_dinas_disposes", result).await?;
        Ok::<_, anyhow::Error>(session)
    })?;
    // The CLI over gRPC: step 2 done by kadis, the ticket at step 3.
    let show = o.json("hd", &["ticket", "show", &id, "--json"])?;
    ensure!(show["ticket"]["step"] == 3, "{show}");
    let trail = show["trail"]
        .as_array()
        .ok_or_else(|| anyhow!("no trail in {show}"))?;
    let done = trail
        .iter()
        .map(|r| &r["event"])
        .find(|e| e["kind"] == "disposed" && e["step"] == 2)
        .ok_or_else(|| anyhow!("step 2 not disposed: {show}"))?;
    ensure!(
        done["user"] == "kadis" && done["role"] == "kepala_dinas",
        "{done}"
    );
    // The session cookie of before the logout is refused.
    ensure!(session.len() == 64, "{session:?}");
    let (client, plain) = plain_client(&o)?;
    runtime()?.block_on(async {
        for path in ["/tiket", &format!("/tiket/{id}")] {
            let r = client
                .get(format!("{plain}{path}"))
                .header("cookie", format!("siaga_sesi={session}"))
                .send()
                .await?;
            let to = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            ensure!(
                (r.status().as_u16(), to.as_str()) == (303, "/masuk"),
                "{path} after logout: {} {to}",
                r.status()
            );
        }
        Ok(())
    })
}

/// Walks ticket `id` with the CLI through the whole chain but the Kepala
/// Dinas's review, then the review: its report is frozen.
fn walk_to_the_end(o: &Office, id: &str) -> Result<()> {
    for who in ["opd", "kadis", "kabid", "prakom", "hd"] {
        o.ok(who, &["ticket", "dispose", id])?;
    }
    o.ok(
        "opd",
        &[
            "ticket",
            "acknowledge",
            id,
            "--by",
            "Andi Wijaya, Kasubag Umum",
        ],
    )?;
    o.ok(
        "teknisi",
        &[
            "ticket",
            "dispose",
            id,
            "--no-measurement-reason",
            "perangkat diganti baru",
        ],
    )?;
    for who in ["hd", "prakom", "kabid", "kadis"] {
        o.ok(who, &["ticket", "dispose", id])?;
    }
    Ok(())
}

/// The pemohon's steps: another OPD's ticket typed in, then the own
/// ticket's report and the address of its PDF link.
async fn pemohon_reads(b: &Client, base: &str, own: &str, other: &str) -> Result<String> {
    log_in(b, base, "opd", "rahasia-pemohon-1").await?;
    wait_for(b, "ul.opd").await?;
    b.goto(&format!("{base}/tiket/{other}")).await?;
    let text = text_of(b, "main").await?;
    ensure!(text.contains("tidak ditemukan"), "{text:?}");
    let title = text_of(b, "header h1").await?;
    ensure!(title == "Siaga · Tidak ditemukan", "{title:?}");
    b.goto(&format!("{base}/tiket/{other}/laporan")).await?;
    ensure!(text_of(b, "main").await?.contains("tidak ditemukan"));
    b.goto(&format!("{base}/tiket/{own}")).await?;
    wait_for(b, "a[href$='/laporan']").await?.click().await?;
    let kind = wait_for(b, "#jenis").await?.text().await?;
    ensure!(kind.starts_with("Laporan final"), "{kind:?}");
    let report = text_of(b, "article.laporan").await?;
    ensure!(report.contains("LAPORAN PEKERJAAN"), "{report:?}");
    let href = b
        .find(Locator::Css("a#pdf"))
        .await?
        .attr("href")
        .await?
        .ok_or_else(|| anyhow!("the PDF link has no address"))?;
    ensure!(href == format!("/tiket/{own}/laporan.pdf"), "{href}");
    let session = b
        .get_named_cookie("siaga_sesi")
        .await
        .map_err(|e| anyhow!("the session cookie: {e}"))?
        .value()
        .to_string();
    Ok(format!("{href}\n{session}"))
}

#[test]
fn a_pemohon_finds_no_other_opds_ticket_and_the_pdf_link_is_the_clis_report() -> Result<()> {
    let (o, base) = web_office(&[("opd", "rahasia-pemohon-1")])?;
    let own = letter_of(&o, "dinkes", "005/2/DINKES")?;
    let other = letter_of(&o, "dishub", "005/2/DISHUB")?;
    walk_to_the_end(&o, &own)?;
    let pdf = o.file("cli.pdf");
    o.ok(
        "opd",
        &[
            "ticket",
            "report",
            &own,
            "--format",
            "pdf",
            "--out",
            &pdf.to_string_lossy(),
        ],
    )?;
    let cli = std::fs::read(&pdf)?;
    let driver = Driver::start()?;
    let found = runtime()?.block_on(async {
        let b = driver.browser().await?;
        let mut found = String::new();
        let result = pemohon_reads(&b, &base, &own, &other)
            .await
            .map(|s| found = s);
        finish(b, "a_pemohon_finds_no_other_opds_ticket", result).await?;
        Ok::<_, anyhow::Error>(found)
    })?;
    let (href, session) = found.split_once('\n').ok_or_else(|| anyhow!("{found:?}"))?;
    // The link, fetched with the browser's session: the CLI's bytes.
    let (client, plain) = plain_client(&o)?;
    let web = runtime()?.block_on(async {
        let r = client
            .get(format!("{plain}{href}"))
            .header("cookie", format!("siaga_sesi={session}"))
            .send()
            .await?;
        ensure!(r.status() == 200, "{href}: {}", r.status());
        ensure!(
            r.headers()
                .get("content-type")
                .is_some_and(|v| v == "application/pdf"),
            "{:?}",
            r.headers()
        );
        Ok(r.bytes().await?.to_vec())
    })?;
    ensure!(web.starts_with(b"%PDF"), "not a PDF");
    ensure!(
        web == cli,
        "the PDF link ({} bytes) is not the report siaga saved ({} bytes)",
        web.len(),
        cli.len()
    );
    Ok(())
}

/// The login form's message after a submit (the form is loaded afresh
/// before each try, so an older message cannot be taken for it).
async fn login_message(b: &Client) -> Result<String> {
    wait_for(b, "p.pesan")
        .await?
        .text()
        .await
        .map_err(Into::into)
}

/// The current code of the `otpauth://` URI `siaga user totp` printed.
fn current_code(enrolled: &str) -> Result<String> {
    let uri = enrolled
        .split_whitespace()
        .find(|w| w.starts_with("otpauth://"))
        .ok_or_else(|| anyhow!("no otpauth:// URI in {enrolled:?}"))?;
    let totp = totp_rs::Totp::from_url(uri).map_err(|e| anyhow!("{uri}: {e}"))?;
    Ok(totp.generate_current().to_string())
}

/// Logs out with the header's "Keluar" and waits for the login form.
async fn log_out(b: &Client) -> Result<()> {
    b.find(Locator::Css("header form button"))
        .await?
        .click()
        .await?;
    wait_for(b, "form.masuk").await?;
    Ok(())
}

/// The logins: with a second factor (asked on its own form after the password), with
/// the password alone, then five wrong passwords from this one address and
/// the lockout, which refuses the right password too.
async fn logins(b: &Client, base: &str, enrolled: &str) -> Result<()> {
    // kabid has a second factor: after the password, a form of its own
    // asks for the code only.
    log_in(b, base, "kabid", "rahasia-kabid-123").await?;
    wait_for(b, "#kode").await?;
    ensure!(path_of(b).await? == "/masuk/kode");
    let asked = text_of(b, "form.masuk").await?;
    ensure!(
        asked.contains("Masuk sebagai kabid") && asked.contains("kode 6 angka"),
        "{asked:?}"
    );
    ensure!(
        b.find(Locator::Css("#sandi")).await.is_err(),
        "the code form asks for the password again"
    );
    // The pending login opens no page.
    b.goto(&format!("{base}/papan")).await?;
    ensure!(
        path_of(b).await? == "/masuk",
        "the board opened before the code"
    );
    // The code form is still there for this browser.
    b.goto(&format!("{base}/masuk/kode")).await?;
    wait_for(b, "#kode").await?;
    b.find(Locator::Css("#kode"))
        .await?
        .send_keys(&current_code(enrolled)?)
        .await?;
    b.find(Locator::Css("form.masuk button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_for(b, "ul.opd").await?;
    ensure!(path_of(b).await? == "/papan");
    log_out(b).await?;
    // hd has none: the password alone opens the board.
    log_in(b, base, "hd", "rahasia-helpdesk-1").await?;
    wait_for(b, "ul.opd").await?;
    ensure!(path_of(b).await? == "/papan");
    log_out(b).await?;
    // Four wrong passwords: refused, each with the same message.
    for i in 1..=4 {
        log_in(b, base, "hd", &format!("bukan-sandinya-{i}")).await?;
        let msg = login_message(b).await?;
        ensure!(
            msg == "Nama pengguna atau kata sandi salah.",
            "try {i}: {msg:?}"
        );
    }
    // The fifth locks the name and the address out, and says so.
    log_in(b, base, "hd", "bukan-sandinya-5").await?;
    let locked = "Terlalu banyak percobaan masuk yang gagal (5 kali dalam 15 menit).";
    let msg = login_message(b).await?;
    ensure!(msg.starts_with(locked), "try 5: {msg:?}");
    // Now the right password is refused with the same message: no board.
    log_in(b, base, "hd", "rahasia-helpdesk-1").await?;
    let msg = login_message(b).await?;
    ensure!(msg.starts_with(locked), "the right password: {msg:?}");
    ensure!(path_of(b).await? == "/masuk");
    b.goto(&format!("{base}/papan")).await?;
    ensure!(
        path_of(b).await? == "/masuk",
        "the board opened while locked"
    );
    // So is another name from the same address.
    log_in(b, base, "kadis", "rahasia-kadis-123").await?;
    let msg = login_message(b).await?;
    ensure!(
        msg.starts_with(locked),
        "another name, same address: {msg:?}"
    );
    Ok(())
}

#[test]
fn logins_in_chromium_with_a_code_and_without_then_the_lockout_refuses_even_the_right_password()
-> Result<()> {
    let (o, base) = web_office(&[
        ("kabid", "rahasia-kabid-123"),
        ("hd", "rahasia-helpdesk-1"),
        ("kadis", "rahasia-kadis-123"),
    ])?;
    let enrolled = o.ok("root", &["user", "totp", "kabid"])?;
    let driver = Driver::start()?;
    runtime()?.block_on(in_browser(&driver, "logins_then_the_lockout", async |b| {
        logins(b, &base, &enrolled).await
    }))
}

/// The CSRF token of the session `person` opens with their password (a
/// client outside the browser): the hidden field of the board's logout form.
async fn token_of_another_session(o: &Office, person: &str, password: &str) -> Result<String> {
    let mut other = Browser::new(&o.collector)?;
    let (status, to, _) = other.log_in(person, password).await?;
    ensure!(
        (status, to.as_str()) == (303, "/papan"),
        "{person}: {status} {to}"
    );
    let (status, _, page) = other.get("/papan").await?;
    ensure!(status == 200, "{person}'s board: {status}");
    let field = "name=\"csrf\" value=\"";
    let at = page
        .find(field)
        .ok_or_else(|| anyhow!("no CSRF field on {person}'s board"))?
        + field.len();
    let token = page[at..].split('"').next().unwrap_or_default().to_string();
    ensure!(token.len() == 64, "{token:?}");
    Ok(token)
}

/// Posts the ticket page's dispose form from the page's own script (same
/// origin: the session cookie goes along) with `csrf` (none when `None`);
/// the answer's status and the path it ended at.
async fn post_dispose(b: &Client, csrf: Option<&str>) -> Result<(u64, String)> {
    let js = "var done = arguments[arguments.length - 1];
        var form = document.querySelector('form#disposisi');
        var body = new URLSearchParams();
        if (arguments[0] !== null) { body.set('csrf', arguments[0]); }
        body.set('catatan', 'dari skrip');
        fetch(form.action, { method: 'POST', body: body })
            .then(function (r) { done([r.status, new URL(r.url).pathname]); },
                  function (e) { done([0, String(e)]); });";
    let arg = csrf.map_or(serde_json::Value::Null, Into::into);
    let got = b.execute_async(js, vec![arg]).await?;
    let status = got[0].as_u64().unwrap_or(0);
    Ok((status, got[1].as_str().unwrap_or_default().to_string()))
}

/// The ticket's step, as `siaga ticket show --json` tells the helpdesk.
fn step_of(o: &Office, id: &str) -> Result<u64> {
    let show = o.json("hd", &["ticket", "show", id, "--json"])?;
    show["ticket"]["step"]
        .as_u64()
        .ok_or_else(|| anyhow!("no step in {show}"))
}

#[test]
fn a_form_posted_without_the_csrf_token_or_with_another_sessions_is_refused_in_chromium()
-> Result<()> {
    let (o, base) = web_office(&[("kadis", "rahasia-kadis-123"), ("hd", "rahasia-helpdesk-1")])?;
    let id = letter_of(&o, "dinkes", "005/3/DINKES")?;
    o.ok("opd", &["ticket", "dispose", &id])?;
    ensure!(step_of(&o, &id)? == 2);
    let driver = Driver::start()?;
    runtime()?.block_on(async {
        let other = token_of_another_session(&o, "hd", "rahasia-helpdesk-1").await?;
        let b = driver.browser().await?;
        let result = async {
            log_in(&b, &base, "kadis", "rahasia-kadis-123").await?;
            wait_for(&b, "ul.opd").await?;
            b.goto(&format!("{base}/tiket/{id}")).await?;
            wait_for(&b, "form#disposisi").await?;
            let page = format!("/tiket/{id}");
            let action = format!("{page}/disposisi");
            let refused = post_dispose(&b, None).await?;
            ensure!(refused == (403, action.clone()), "no token: {refused:?}");
            let refused = post_dispose(&b, Some(&other)).await?;
            ensure!(refused == (403, action.clone()), "hd's token: {refused:?}");
            ensure!(step_of(&o, &id)? == 2, "the ticket moved");
            // The same post with the page's own token goes through (the
            // refusals were the token's, not the script's).
            let own = b
                .find(Locator::Css("form#disposisi input[name=csrf]"))
                .await?
                .attr("value")
                .await?
                .unwrap_or_default();
            let done = post_dispose(&b, Some(&own)).await?;
            ensure!(done == (200, page), "own token: {done:?}");
            ensure!(step_of(&o, &id)? == 3, "the ticket did not move");
            Ok(())
        }
        .await;
        finish(b, "a_form_posted_without_the_csrf_token", result).await
    })
}
