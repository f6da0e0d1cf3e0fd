//! The console as a person's browser meets it: a real collector
//! ([`Fixture::start_web`]) over HTTPS with its own CA, a client that keeps
//! cookies the way a browser does and never follows redirects by itself.

use std::collections::HashMap;

use siaga_proto::v1::{self, users_client::UsersClient};

use crate::api::testing::Fixture;

/// A browser's view: cookies kept, forms posted by hand.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

/// One answer: status, `Set-Cookie` lines, `Location`, body.
#[derive(Debug)]
struct Page {
    status: u16,
    set_cookies: Vec<String>,
    location: String,
    body: String,
}

impl Page {
    /// The value of the form's hidden CSRF field.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    fn cookie_line(&self, name: &str) -> &str {
        self.set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no Set-Cookie {name} in {:?}", self.set_cookies))
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    async fn new(f: &Fixture) -> Browser {
        crate::notify::install_crypto_provider();
        let addr: std::net::SocketAddr = f.web_addr().await.parse().unwrap();
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(f.dir.join("ca.pem")).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", addr)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            client,
            base: format!("https://localhost:{}", addr.port()),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie)
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let set_cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &set_cookies {
            let first = c.split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = r.text().await.unwrap();
        Page {
            status,
            set_cookies,
            location,
            body,
        }
    }

    /// Opens a server-sent event stream at `path` with the session's cookies.
    async fn events(&self, path: &str) -> reqwest::Response {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        self.send(req).await
    }

    /// Opens the login page and submits `name` and `password` with its token.
    async fn log_in(&mut self, name: &str, password: &str) -> Page {
        let p = self.get("/masuk").await;
        assert_eq!(p.status, 200, "{p:?}");
        let csrf = p.csrf();
        self.post(
            "/masuk",
            &[("nama", name), ("sandi", password), ("csrf", &csrf)],
        )
        .await
    }
}

async fn set_password(f: &Fixture, name: &str, password: &str) {
    UsersClient::new(f.as_role("admin"))
        .set_password(v1::SetPasswordRequest {
            name: name.into(),
            password: password.into(),
        })
        .await
        .unwrap();
}

fn audit_trail(f: &Fixture) -> String {
    std::fs::read_to_string(f.data_dir().join(crate::api::gate::AUDIT_FILE)).unwrap_or_default()
}

/// The trail is written off the request path: wait for `needle` a moment.
async fn audited(f: &Fixture, needle: &str) -> String {
    for _ in 0..100 {
        let t = audit_trail(f);
        if t.contains(needle) {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{needle:?} not in the audit trail:\n{}", audit_trail(f));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_cookie_flags_board_and_logout_that_ends_the_session() {
    let f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut b = Browser::new(&f).await;
    // Not logged in: the board sends to the login page.
    let p = b.get("/papan").await;
    assert_eq!((p.status, p.location.as_str()), (303, "/masuk"));
    let login = b.get("/masuk").await;
    assert!(login.body.contains("Kata sandi"), "{}", login.body);
    assert!(login.body.contains("lang=\"id\""));
    assert!(
        login
            .cookie_line("siaga_csrf")
            .ends_with("; Path=/; Max-Age=28800; HttpOnly; Secure; SameSite=Strict")
    );
    let p = b
        .post(
            "/masuk",
            &[
                ("nama", "hd"),
                ("sandi", "rahasia-helpdesk-1"),
                ("csrf", &login.csrf()),
            ],
        )
        .await;
    assert_eq!((p.status, p.location.as_str()), (303, "/papan"), "{p:?}");
    let session = p.cookie_line("siaga_sesi").to_string();
    assert!(
        session.ends_with("; Path=/; Max-Age=28800; HttpOnly; Secure; SameSite=Strict"),
        "{session}"
    );
    let old_cookie = b.cookies["siaga_sesi"].clone();
    assert_eq!(old_cookie.len(), 64);
    let board = b.get("/papan").await;
    assert_eq!(board.status, 200);
    assert!(board.body.contains("Papan status"));
    assert!(board.body.contains("Dinas Kesehatan") && board.body.contains("Dinas Perhubungan"));
    // Four devices, none heard by an agent: unknown, counted per OPD.
    assert!(board.body.contains("data-opd=\"dinkes\""), "{}", board.body);
    audited(&f, "\"rpc\":\"web/login\",\"user\":\"hd\"").await;
    let t = audit_trail(&f);
    assert!(t.contains("\"outcome\":\"ok (127.0.0.1)\""), "{t}");
    // Logout without the session's token is refused and the session lives on.
    let p = b.post("/keluar", &[("csrf", "")]).await;
    assert_eq!(p.status, 403);
    let p = b.post("/keluar", &[("csrf", &"0".repeat(64))]).await;
    assert_eq!(p.status, 403);
    assert_eq!(b.get("/papan").await.status, 200);
    let p = b.post("/keluar", &[("csrf", &board.csrf())]).await;
    assert_eq!((p.status, p.location.as_str()), (303, "/masuk"));
    assert!(p.cookie_line("siaga_sesi").contains("Max-Age=0"));
    // The old cookie, sent again, is refused: the session ended server-side.
    b.cookies.insert("siaga_sesi".into(), old_cookie);
    let p = b.get("/papan").await;
    assert_eq!((p.status, p.location.as_str()), (303, "/masuk"));
    audited(&f, "\"rpc\":\"web/logout\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_five_failures_lock_the_login() {
    let f = Fixture::start_web().await;
    set_password(&f, "kabid", "rahasia-kabid-123").await;
    let mut b = Browser::new(&f).await;
    for i in 1..=3 {
        let p = b.log_in("kabid", "salah-sekali").await;
        assert_eq!(p.status, 401, "failure {i}: {p:?}");
        assert!(
            p.body.contains("Nama pengguna atau kata sandi salah."),
            "{}",
            p.body
        );
        assert!(!b.cookies.contains_key("siaga_sesi"));
    }
    // An unknown name reads the same as a wrong password (and counts for
    // the address too).
    let p = b.log_in("tidak-ada", "salah-sekali").await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("Nama pengguna atau kata sandi salah."));
    // The fifth failure from the address in 15 minutes locks it.
    let p = b.log_in("kabid", "salah-lagi").await;
    assert_eq!(p.status, 429, "{p:?}");
    assert!(
        p.body.contains("Terlalu banyak percobaan masuk yang gagal"),
        "{}",
        p.body
    );
    // Locked: even the right password does not get in now.
    let p = b.log_in("kabid", "rahasia-kabid-123").await;
    assert_eq!(p.status, 429, "{p:?}");
    assert!(p.body.contains("coba lagi dalam 15 menit"), "{}", p.body);
    assert!(!b.cookies.contains_key("siaga_sesi"));
    let t = audited(&f, "locked out for 15 min").await;
    assert!(t.contains("\"refused: wrong password (127.0.0.1)\""), "{t}");
    audited(&f, "refused: locked out (127.0.0.1)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_ends_the_sessions_opened_with_the_old_one() {
    let f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut b = Browser::new(&f).await;
    assert_eq!(b.log_in("hd", "rahasia-helpdesk-1").await.status, 303);
    assert_eq!(b.get("/papan").await.status, 200);
    // The password leaks; the admin sets a new one: the open session ends.
    set_password(&f, "hd", "rahasia-helpdesk-2").await;
    let p = b.get("/papan").await;
    assert_eq!((p.status, p.location.as_str()), (303, "/masuk"), "{p:?}");
    // Logging in again with the new password works, the old one does not.
    let mut again = Browser::new(&f).await;
    assert_eq!(again.log_in("hd", "rahasia-helpdesk-1").await.status, 401);
    assert_eq!(again.log_in("hd", "rahasia-helpdesk-2").await.status, 303);
    assert_eq!(again.get("/papan").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_its_csrf_token_is_refused_and_no_password_says_whom_to_ask() {
    let f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut b = Browser::new(&f).await;
    let login = b.get("/masuk").await;
    // No token at all; a token of another page; the right token but no cookie.
    let p = b
        .post("/masuk", &[("nama", "hd"), ("sandi", "rahasia-helpdesk-1")])
        .await;
    assert_eq!(p.status, 403, "{p:?}");
    assert!(p.body.contains("kedaluwarsa atau tidak sah"), "{}", p.body);
    let p = b
        .post(
            "/masuk",
            &[
                ("nama", "hd"),
                ("sandi", "rahasia-helpdesk-1"),
                ("csrf", &"a".repeat(64)),
            ],
        )
        .await;
    assert_eq!(p.status, 403);
    let csrf = login.csrf();
    b.cookies.clear();
    let p = b
        .post(
            "/masuk",
            &[
                ("nama", "hd"),
                ("sandi", "rahasia-helpdesk-1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, 403);
    assert!(!b.cookies.contains_key("siaga_sesi"));
    // A person without a password is told to ask the admin.
    let p = b.log_in("kadis", "apa-saja-12345").await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("siaga user passwd kadis"), "{}", p.body);
    audited(&f, "refused: no password set").await;
    // The right way in still works.
    let p = b.log_in("hd", "rahasia-helpdesk-1").await;
    assert_eq!(p.status, 303, "{p:?}");
}

/// The data of the next server-sent event on `r`.
async fn next_event(r: &mut reqwest::Response) -> String {
    let mut buf = String::new();
    loop {
        if let Some(end) = buf.find("\n\n") {
            let event = &buf[..end];
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                return data.join("\n");
            }
            buf.drain(..end + 2);
            continue;
        }
        let chunk = r.chunk().await.unwrap().expect("the stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pemohon_sees_only_its_own_opd_and_the_helpdesk_sees_both() {
    let f = Fixture::start_web().await;
    set_password(&f, "opd", "rahasia-pemohon-1").await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut pemohon = Browser::new(&f).await;
    assert_eq!(pemohon.log_in("opd", "rahasia-pemohon-1").await.status, 303);
    let board = pemohon.get("/papan").await;
    assert_eq!(board.status, 200);
    assert!(board.body.contains("Dinas Kesehatan"), "{}", board.body);
    assert!(!board.body.contains("Dinas Perhubungan"), "{}", board.body);
    assert!(!board.body.contains("dishub"), "{}", board.body);
    let mut hd = Browser::new(&f).await;
    assert_eq!(hd.log_in("hd", "rahasia-helpdesk-1").await.status, 303);
    let board = hd.get("/papan").await;
    assert!(board.body.contains("Dinas Kesehatan"));
    assert!(board.body.contains("Dinas Perhubungan"));
    // Two devices each, none heard yet: two unknown per OPD.
    assert_eq!(
        board.body.matches("<dd class=\"unknown\">2</dd>").count(),
        2
    );
    // The live board: its first event is the board as it stands.
    let mut live = hd.events("/papan/langsung").await;
    assert_eq!(live.status(), 200);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let first = next_event(&mut live).await;
    assert!(
        first.contains("id=\"papan\"") && first.contains("<dd class=\"maintenance\">0</dd>"),
        "{first}"
    );
    // A window over dishub now: its two devices count as in maintenance.
    let now = chrono::Utc::now();
    v1::tickets_client::TicketsClient::new(f.as_role("admin"))
        .add_maintenance_window(v1::AddMaintenanceWindowRequest {
            scope: Some(v1::MaintenanceScope {
                kind: v1::maintenance_scope_kind::Kind::Opd.into(),
                opd: "dishub".into(),
                ..Default::default()
            }),
            schedule: Some(v1::MaintenanceSchedule {
                kind: v1::maintenance_schedule::Kind::Once.into(),
                start: Some(crate::ticket::wire::ts(now)),
                end: Some(crate::ticket::wire::ts(now + chrono::Duration::hours(1))),
                ..Default::default()
            }),
            reason: "ganti switch".into(),
        })
        .await
        .expect("window");
    // The live board says so by itself, without a reload, within 2 s.
    // (Skipping an event the turn of a minute may send in between.)
    let changed = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        loop {
            let e = next_event(&mut live).await;
            if e.contains("<dd class=\"maintenance\">2</dd>") {
                return e;
            }
        }
    })
    .await
    .expect("the live board shows the window within 2 s");
    assert!(changed.contains("data-opd=\"dishub\""), "{changed}");
    let board = hd.get("/papan").await;
    assert!(board.body.contains("/papan/langsung"), "the page listens");
    let dishub = &board.body[board.body.find("data-opd=\"dishub\"").expect("dishub")..];
    let dishub = &dishub[..dishub.find("</li>").expect("end of dishub")];
    assert!(
        dishub.contains("<dd class=\"maintenance\">2</dd>")
            && dishub.contains("<dd class=\"unknown\">0</dd>"),
        "{dishub}"
    );
    let dinkes = &board.body[board.body.find("data-opd=\"dinkes\"").expect("dinkes")..];
    let dinkes = &dinkes[..dinkes.find("</li>").expect("end of dinkes")];
    assert!(
        dinkes.contains("<dd class=\"maintenance\">0</dd>"),
        "{dinkes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rubbish_on_the_web_port_leaves_the_grpc_side_serving() {
    use tokio::io::AsyncWriteExt as _;
    let f = Fixture::start_web().await;
    let addr = f.web_addr().await;
    // Half-open handshakes and plain-text rubbish.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff").await;
        held.push(s);
    }
    let who = siaga_proto::v1::admin_client::AdminClient::new(f.as_role("helpdesk"))
        .who_am_i(v1::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.user, "hd");
    drop(held);
    // And the console itself still answers.
    let mut b = Browser::new(&f).await;
    assert_eq!(b.get("/masuk").await.status, 200);
    assert_eq!(b.get("/tidak-ada").await.status, 404);
}
