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
    /// The `Retry-After` header, if any.
    retry_after: String,
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
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = r.text().await.unwrap();
        Page {
            status,
            set_cookies,
            location,
            retry_after,
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

    /// Status, content type and bytes of a download at `path`.
    async fn bytes(&mut self, path: &str) -> (u16, String, Vec<u8>) {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let mime = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, mime, r.bytes().await.unwrap().to_vec())
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Page {
        let mut req = self.client.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
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

/// The trail as it is when the answer has come: the record of a call is
/// written before its answer is sent, so `needle` must be there at once.
async fn audited(f: &Fixture, needle: &str) -> String {
    let t = audit_trail(f);
    assert!(
        t.contains(needle),
        "{needle:?} not in the audit trail:\n{t}"
    );
    t
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
    assert!(
        t.contains("\"outcome\":\"ok (127.0.0.1; password)\""),
        "{t}"
    );
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

/// Posts a login as if through a proxy that says the client is `client`.
async fn log_in_via(b: &mut Browser, name: &str, password: &str, client: &str) -> Page {
    let p = b.get("/masuk").await;
    let csrf = p.csrf();
    let req = b
        .client
        .post(format!("{}/masuk", b.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", client)
        .body(form(&[
            ("nama", name),
            ("sandi", password),
            ("csrf", &csrf),
        ]));
    b.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_lockout_counts_the_client_not_the_proxy() {
    let f = Fixture::start_full(
        crate::api::testing::INVENTORY,
        "\n[web]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
    )
    .await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut b = Browser::new(&f).await;
    // Five people behind the one proxy mistype, each under another name,
    // from one client address: that client is locked out ...
    for (i, name) in ["a1", "a2", "a3", "a4"].iter().enumerate() {
        let p = log_in_via(&mut b, name, "salah-sekali", "198.18.0.7").await;
        assert_eq!(p.status, 401, "failure {i}: {p:?}");
    }
    let p = log_in_via(&mut b, "a5", "salah-sekali", "198.18.0.1, 198.18.0.7").await;
    assert_eq!(p.status, 429, "{p:?}");
    audited(&f, "(198.18.0.7); locked out for 15 min").await;
    // ... and everybody else behind the proxy still gets in.
    let p = log_in_via(&mut b, "hd", "rahasia-helpdesk-1", "198.18.0.8").await;
    assert_eq!(p.status, 303, "{p:?}");
    audited(&f, "ok (198.18.0.8; password)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_cannot_pick_its_address_with_x_forwarded_for() {
    // No trusted proxy: the header is ignored, failures under made-up
    // addresses all count for the real peer.
    let f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut b = Browser::new(&f).await;
    for i in 1..=4 {
        let p = log_in_via(&mut b, &format!("a{i}"), "salah", &format!("198.18.0.{i}")).await;
        assert_eq!(p.status, 401, "{p:?}");
    }
    let p = log_in_via(&mut b, "a5", "salah-sekali", "198.18.0.5").await;
    assert_eq!(p.status, 429, "{p:?}");
    let p = log_in_via(&mut b, "hd", "rahasia-helpdesk-1", "198.18.0.9").await;
    assert_eq!(p.status, 429, "{p:?}");
    audited(&f, "refused: locked out (127.0.0.1)").await;
}

#[test]
fn the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy() {
    let peer: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let proxies: Vec<ipnet::IpNet> = vec![
        "127.0.0.1/32".parse().unwrap(),
        "198.18.9.0/24".parse().unwrap(),
    ];
    let of = |xff: &[&str]| {
        let mut h = http::HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        super::client_of(peer, &h, &proxies).to_string()
    };
    assert_eq!(of(&[]), "127.0.0.1");
    assert_eq!(of(&["198.18.0.5"]), "198.18.0.5");
    // The left hops were written by the client: only the right ones count.
    assert_eq!(of(&["198.18.0.66, 198.18.0.5, 198.18.9.1"]), "198.18.0.5");
    assert_eq!(of(&["198.18.0.66", "198.18.0.5"]), "198.18.0.5");
    assert_eq!(of(&["2001:db8::5"]), "2001:db8::5");
    // Nonsense from the proxy: the proxy is the client.
    assert_eq!(of(&["nonsense"]), "127.0.0.1");
    // A chain longer than MAX_FORWARDED_HOPS is looked at only that far
    // from the right: a client behind more trusted hops than that is the
    // proxy itself.
    let many = |n: usize| {
        let mut hops = vec!["198.18.0.5".to_string()];
        hops.extend((0..n).map(|i| format!("198.18.9.{}", i + 1)));
        of(&[hops.join(", ").as_str()])
    };
    assert_eq!(many(super::MAX_FORWARDED_HOPS - 1), "198.18.0.5");
    assert_eq!(many(super::MAX_FORWARDED_HOPS), "127.0.0.1");
    // Only a trusted peer's header is read.
    let stranger: std::net::SocketAddr = "198.18.0.20:5000".parse().unwrap();
    let mut h = http::HeaderMap::new();
    h.append("x-forwarded-for", "198.18.0.5".parse().unwrap());
    assert_eq!(
        super::client_of(stranger, &h, &proxies).to_string(),
        "198.18.0.20"
    );
}

#[path = "ticket_tests.rs"]
mod tickets;

/// A week of one-second ICMP samples of `dinkes-sw` up to now (round trips
/// of 1–9 ms, a loss now and then) and an SNMP reading of its uplink each
/// minute, written straight into the store before the collector opens it.
fn seed_week(data_dir: &std::path::Path) {
    use crate::store::{IngestBatch, RedbStore, Store as _};
    use v1::sample::Kind;
    let store = RedbStore::open(data_dir).unwrap();
    let now = crate::ingest::now_us();
    let week = 7 * 24 * 3600;
    let start = now - week * 1_000_000;
    let mut batch = Vec::with_capacity(50_000);
    let mut seq = 0;
    let flush = |batch: &mut Vec<v1::Sample>| {
        let b = IngestBatch::new("dinkes-agent", now, std::mem::take(batch).into());
        store.commit(&[b], &[]).unwrap();
    };
    for s in 0..week {
        let ts = start + s * 1_000_000 + 500_000;
        seq += 1;
        let avg = 1_000 + (s % 9) as u64 * 1_000;
        batch.push(v1::Sample {
            seq,
            ts_us: ts,
            device: "dinkes-sw".into(),
            kind: Some(Kind::Icmp(v1::IcmpResult {
                sent: 4,
                received: if s % 97 == 0 { 3 } else { 4 },
                loss_pct: if s % 97 == 0 { 25.0 } else { 0.0 },
                rtt_min_us: Some(avg / 2),
                rtt_avg_us: Some(avg),
                rtt_max_us: Some(avg * 2),
                jitter_us: Some(avg / 4),
                ..Default::default()
            })),
        });
        if s % 60 == 0 {
            seq += 1;
            batch.push(v1::Sample {
                seq,
                ts_us: ts,
                device: "dinkes-sw".into(),
                kind: Some(Kind::Snmp(v1::SnmpResult {
                    status: v1::SnmpStatus::Ok as i32,
                    interfaces: vec![v1::Interface {
                        if_index: 1,
                        if_name: "eth0".into(),
                        link_name: "uplink".into(),
                        oper_status: 1,
                        util_in_pct: Some((s % 3600) as f64 / 36.0),
                        util_out_pct: Some(10.0),
                        errors_per_s: Some(if s % 7200 == 0 { 2.0 } else { 0.0 }),
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
            });
        }
        if batch.len() >= 50_000 {
            flush(&mut batch);
        }
    }
    flush(&mut batch);
}

/// The `<svg …>` charts of a page, whole.
fn charts(body: &str) -> Vec<&str> {
    body.match_indices("<svg ")
        .map(|(at, _)| {
            let end = body[at..].find("</svg>").expect("end of svg") + at + "</svg>".len();
            &body[at..end]
        })
        .collect()
}

/// The value of `data-titik` (buckets with readings) of a chart.
fn points(svg: &str) -> usize {
    let at = svg.find("data-titik=\"").expect("data-titik") + "data-titik=\"".len();
    svg[at..at + svg[at..].find('"').unwrap()].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_links_each_opd_to_its_page_which_lists_its_devices_and_links() {
    let f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut b = Browser::new(&f).await;
    // Not logged in: to the login page.
    let p = b.get("/opd/dinkes").await;
    assert_eq!((p.status, p.location.as_str()), (303, "/masuk"));
    assert_eq!(b.log_in("hd", "rahasia-helpdesk-1").await.status, 303);
    let board = b.get("/papan").await;
    eprintln!("board of two OPDs: {} bytes", board.body.len());
    assert!(
        board.body.contains("href=\"/opd/dinkes\""),
        "{}",
        board.body
    );
    assert!(board.body.contains("href=\"/opd/dishub\""));
    let p = b.get("/opd/dinkes").await;
    assert_eq!(p.status, 200, "{p:?}");
    assert!(p.body.contains("Dinas Kesehatan"), "{}", p.body);
    for d in ["dinkes-sw", "dinkes-rtr"] {
        assert!(
            p.body.contains(&format!("href=\"/perangkat/{d}\"")),
            "{d}: {}",
            p.body
        );
    }
    assert!(!p.body.contains("dishub"), "{}", p.body);
    // No agent heard: unknown, no reading; the uplink without a reading.
    assert!(p.body.contains("Tak diketahui"), "{}", p.body);
    assert!(p.body.contains("data-tautan=\"uplink\""), "{}", p.body);
    assert!(p.body.contains("Tidak ada tiket terbuka."), "{}", p.body);
    // A letter ticket of dinkes is on it, one of dishub is not.
    let dinkes = f.ticket_of("dinkes").await;
    let dishub = f.ticket_of("dishub").await;
    let p = b.get("/opd/dinkes").await;
    assert!(p.body.contains(&dinkes), "{}", p.body);
    assert!(p.body.contains("Internet putus"), "{}", p.body);
    assert!(!p.body.contains(&dishub), "{}", p.body);
    let p = b.get("/opd/dishub").await;
    eprintln!(
        "OPD page with two devices, a link and a ticket: {} bytes",
        p.body.len()
    );
    assert!(p.body.contains(&dishub) && p.body.contains("dishub-sw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pemohon_asking_for_another_opd_gets_the_page_of_a_missing_one() {
    let f = Fixture::start_web().await;
    set_password(&f, "opd", "rahasia-pemohon-1").await;
    let mut b = Browser::new(&f).await;
    assert_eq!(b.log_in("opd", "rahasia-pemohon-1").await.status, 303);
    // Its own OPD and device are there.
    assert_eq!(b.get("/opd/dinkes").await.status, 200);
    let own = b.get("/perangkat/dinkes-sw").await;
    assert_eq!(own.status, 200, "{own:?}");
    assert!(own.body.contains("Tidak ada data"), "{}", own.body);
    // Another OPD's, and a missing one: the same 404, byte for byte.
    let missing_opd = b.get("/opd/tidak-ada").await;
    assert_eq!(missing_opd.status, 404);
    assert!(missing_opd.body.contains("Tidak ditemukan"));
    let other_opd = b.get("/opd/dishub").await;
    assert_eq!(other_opd.status, 404);
    assert_eq!(other_opd.body, missing_opd.body);
    let missing_dev = b.get("/perangkat/tidak-ada").await;
    let other_dev = b.get("/perangkat/dishub-sw?rentang=7h").await;
    assert_eq!((missing_dev.status, other_dev.status), (404, 404));
    assert_eq!(other_dev.body, missing_dev.body);
    assert_eq!(other_dev.body, missing_opd.body);
    assert!(!other_dev.body.contains("dishub"));
    // The helpdesk sees both.
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut hd = Browser::new(&f).await;
    assert_eq!(hd.log_in("hd", "rahasia-helpdesk-1").await.status, 303);
    assert_eq!(hd.get("/opd/dishub").await.status, 200);
    assert_eq!(hd.get("/perangkat/dishub-sw").await.status, 200);
    assert_eq!(hd.get("/perangkat/tidak-ada").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_one_second_samples_is_a_small_server_drawn_chart() {
    let f = Fixture::start_web_seeded(seed_week).await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut b = Browser::new(&f).await;
    assert_eq!(b.log_in("hd", "rahasia-helpdesk-1").await.status, 303);
    // The last hour: RTT, loss and jitter drawn, and the uplink's two.
    let hour = b.get("/perangkat/dinkes-sw?rentang=1j").await;
    assert_eq!(hour.status, 200, "{hour:?}");
    assert!(
        hour.body.contains("aria-current=\"page\">1 jam<"),
        "{}",
        hour.body
    );
    let svgs = charts(&hour.body);
    assert_eq!(svgs.len(), 5, "{}", hour.body);
    for (svg, title) in svgs.iter().zip([
        "RTT",
        "hilang",
        "Jitter",
        "Utilisasi tautan uplink",
        "Galat tautan uplink",
    ]) {
        assert!(svg.contains(title), "{title}: {svg}");
        assert!(svg.contains("class=\"garis\""), "{svg}");
        assert!(points(svg) >= 55, "{title}: {}", points(svg));
    }
    // RTT's band runs from the probes' minimum to maximum.
    assert!(svgs[0].contains("class=\"pita\""));
    // A week: from at most 200 buckets, a page of a few KB.
    let t = std::time::Instant::now();
    let week = b.get("/perangkat/dinkes-sw?rentang=7h").await;
    let took = t.elapsed();
    assert_eq!(week.status, 200);
    let svgs = charts(&week.body);
    assert_eq!(svgs.len(), 5);
    for svg in &svgs {
        let n = points(svg);
        assert!(
            (190..=super::chart::BUCKETS).contains(&n),
            "{n} buckets: {svg}"
        );
        assert!(svg.len() < 8 * 1024, "{} bytes", svg.len());
    }
    // Axis labels in the collector's zone (the default calendar's).
    let abbr = crate::sop::Calendar::default().zone_abbr().to_string();
    assert!(
        week.body.contains(&format!("waktu {abbr}<")),
        "{}",
        week.body
    );
    eprintln!(
        "7-day device page: {} bytes, RTT chart {} bytes, read in {took:?}",
        week.body.len(),
        svgs[0].len()
    );
    assert!(week.body.len() < 40 * 1024, "{} bytes", week.body.len());
    let rtt_week = svgs[0].len();
    assert!(rtt_week < 20 * 1024);
    // A device without readings says so.
    let other = b.get("/perangkat/dishub-sw?rentang=7h").await;
    assert_eq!(other.status, 200);
    assert!(charts(&other.body).is_empty());
    assert_eq!(
        other.body.matches("Tidak ada data").count(),
        5,
        "{}",
        other.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_period_links_swap_the_chart_area_with_htmx_and_stay_real_links() {
    let f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut b = Browser::new(&f).await;
    assert_eq!(b.log_in("hd", "rahasia-helpdesk-1").await.status, 303);
    // Without script: a whole page whose period links are real links.
    let page = b.get("/perangkat/dinkes-sw?rentang=24j").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<div id=\"grafik\">"), "{}", page.body);
    for (param, label) in [("1j", "1 jam"), ("7h", "7 hari")] {
        let to = format!("/perangkat/dinkes-sw?rentang={param}");
        assert!(
            page.body
                .contains(&format!("<a href=\"{to}\" hx-get=\"{to}\">{label}</a>")),
            "{}",
            page.body
        );
    }
    assert!(
        page.body
            .contains("hx-target=\"#grafik\" hx-swap=\"outerHTML\" hx-push-url=\"true\"")
    );
    assert!(
        page.body
            .contains(&format!("<script src=\"{}\">", super::assets::HTMX_PATH)),
        "{}",
        page.body
    );
    // What htmx asks for: the chart area alone, the chosen period current.
    let swap = b
        .get_with("/perangkat/dinkes-sw?rentang=7h", &[("HX-Request", "true")])
        .await;
    assert_eq!(swap.status, 200);
    assert!(
        swap.body.starts_with("<div id=\"grafik\">"),
        "{}",
        swap.body
    );
    assert!(swap.body.ends_with("</div>"), "{}", swap.body);
    assert!(!swap.body.contains("<html") && !swap.body.contains("Papan status"));
    assert!(
        swap.body.contains("aria-current=\"page\">7 hari<"),
        "{}",
        swap.body
    );
    assert_eq!(swap.body.matches("<figure").count(), 5, "{}", swap.body);
    // Restoring a page missing from htmx's history cache needs all of it.
    let restore = b
        .get_with(
            "/perangkat/dinkes-sw?rentang=7h",
            &[
                ("HX-Request", "true"),
                ("HX-History-Restore-Request", "true"),
            ],
        )
        .await;
    assert!(
        restore.body.starts_with("<!DOCTYPE html>"),
        "{}",
        restore.body
    );
    // Another OPD's device is missing for the swap too.
    set_password(&f, "opd", "rahasia-pemohon-1").await;
    let mut p = Browser::new(&f).await;
    assert_eq!(p.log_in("opd", "rahasia-pemohon-1").await.status, 303);
    let other = p
        .get_with("/perangkat/dishub-sw?rentang=7h", &[("HX-Request", "true")])
        .await;
    assert_eq!(other.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendored_htmx_is_served_from_the_binary_and_cached_for_a_year() {
    let f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let mut b = Browser::new(&f).await;
    for (path, first) in [
        (super::assets::HTMX_PATH, "/*! htmx 2.0.11"),
        (super::assets::SSE_PATH, "/*! htmx-ext-sse 2.2.4"),
    ] {
        // Before any login: the login page may use it too.
        let r = b
            .client
            .get(format!("{}{path}", b.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
        assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = r.text().await.unwrap();
        assert!(body.starts_with(first), "{}", &body[..80]);
        assert!(body.contains("htmx"));
    }
    // Another version's path is not there.
    assert_eq!(b.get("/aset/htmx-1.0.0.min.js").await.status, 404);
    // The board loads it and listens with its SSE extension; no inline script.
    assert_eq!(b.log_in("hd", "rahasia-helpdesk-1").await.status, 303);
    let r = b
        .client
        .get(format!("{}/papan", b.base))
        .header("cookie", format!("siaga_sesi={}", b.cookies["siaga_sesi"]))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let board = r.text().await.unwrap();
    assert!(
        board.contains(&format!(
            "<script src=\"{}\"></script>",
            super::assets::HTMX_PATH
        )),
        "{board}"
    );
    assert!(board.contains("hx-ext=\"sse\" sse-connect=\"/papan/langsung\" sse-swap=\"message\""));
    assert_eq!(board.matches("<script").count(), 2, "{board}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_with_a_second_factor_needs_the_code_once_each() {
    let f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    // Someone else may not enrol hd's factor; the admin may.
    let e = UsersClient::new(f.as_role("kepala_dinas"))
        .enroll_totp(v1::EnrollTotpRequest { name: "hd".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let r = UsersClient::new(f.as_role("admin"))
        .enroll_totp(v1::EnrollTotpRequest { name: "hd".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.otpauth_uri.starts_with("otpauth://totp/Siaga:hd?"),
        "{}",
        r.otpauth_uri
    );
    assert!(r.otpauth_uri.contains(&format!("secret={}", r.secret)));
    // Kept in the user's file, beside the password hash.
    let file = std::fs::read_to_string(f.cfg.users.join("hd.toml")).unwrap();
    assert!(
        file.contains(&format!("totp_secret = \"{}\"", r.secret)),
        "{file}"
    );
    let now = || u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    let code = super::totp::code_at(&r.secret, now()).unwrap();

    // The password alone: a pending login, no session, and the next form
    // asks for the code only.
    let mut b = Browser::new(&f).await;
    let p = b.log_in("hd", "rahasia-helpdesk-1").await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/masuk/kode"),
        "{p:?}"
    );
    let pending = p.cookie_line("siaga_masuk").to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=300"] {
        assert!(pending.contains(flag), "{pending}");
    }
    assert!(!b.cookies.contains_key("siaga_sesi"));
    let form = b.get("/masuk/kode").await;
    assert_eq!(form.status, 200, "{form:?}");
    assert!(form.body.contains("name=\"kode\""), "{}", form.body);
    assert!(form.body.contains("kode 6 angka"), "{}", form.body);
    assert!(!form.body.contains("name=\"sandi\""), "{}", form.body);
    let csrf = form.csrf();
    // The pending login opens nothing else: not as itself, nor as a session.
    let p = b.get("/papan").await;
    assert_eq!((p.status, p.location.as_str()), (303, "/masuk"), "{p:?}");
    let pending_id = b.cookies["siaga_masuk"].clone();
    let mut forged = Browser::new(&f).await;
    forged
        .cookies
        .insert("siaga_sesi".into(), pending_id.clone());
    let p = forged.get("/papan").await;
    assert_eq!((p.status, p.location.as_str()), (303, "/masuk"), "{p:?}");
    forged.cookies.clear();
    // Without the form's token, or with another's: refused.
    let p = b.post("/masuk/kode", &[("kode", &code)]).await;
    assert_eq!(p.status, 403, "{p:?}");
    let p = b
        .post(
            "/masuk/kode",
            &[("kode", &code), ("csrf", &super::session::token())],
        )
        .await;
    assert_eq!(p.status, 403, "{p:?}");
    // A wrong code: refused, the pending login stays for another try.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let p = b
        .post("/masuk/kode", &[("kode", wrong), ("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 401, "{p:?}");
    assert!(p.body.contains("Kode autentikator salah"), "{}", p.body);
    assert!(!b.cookies.contains_key("siaga_sesi"));
    // The code from another browser without the pending cookie: refused.
    let p = forged
        .post("/masuk/kode", &[("kode", &code), ("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 401, "{p:?}");
    assert!(!forged.cookies.contains_key("siaga_sesi"));
    // The right code: in.
    let p = b
        .post("/masuk/kode", &[("kode", &code), ("csrf", &csrf)])
        .await;
    assert_eq!((p.status, p.location.as_str()), (303, "/papan"), "{p:?}");
    assert!(p.cookie_line("siaga_masuk").contains("Max-Age=0"));
    assert_eq!(b.get("/papan").await.status, 200);
    audited(&f, "\"outcome\":\"ok (127.0.0.1; password+totp)\"").await;
    audited(&f, "refused: wrong or reused second-factor code").await;
    // The pending login was taken: it does not serve twice.
    let mut replay = Browser::new(&f).await;
    replay.cookies.insert("siaga_masuk".into(), pending_id);
    let p = replay
        .post("/masuk/kode", &[("kode", &code), ("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 401, "{p:?}");
    assert!(!replay.cookies.contains_key("siaga_sesi"));
    // The same code again, from another browser: refused.
    let mut again = Browser::new(&f).await;
    let p = code_login(&mut again, &code).await;
    assert_eq!(p.status, 401, "{p:?}");
    assert!(!again.cookies.contains_key("siaga_sesi"));
}

/// Logs `hd` in with the password, then `code` on the second form.
async fn code_login(b: &mut Browser, code: &str) -> Page {
    let p = b.log_in("hd", "rahasia-helpdesk-1").await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/masuk/kode"),
        "{p:?}"
    );
    let csrf = b.get("/masuk/kode").await.csrf();
    b.post("/masuk/kode", &[("kode", code), ("csrf", &csrf)])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_code_stays_used_after_a_restart_and_counts_as_a_failure() {
    let mut f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    let secret = UsersClient::new(f.as_role("admin"))
        .enroll_totp(v1::EnrollTotpRequest { name: "hd".into() })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let now = || u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    let code = super::totp::code_at(&secret, now()).unwrap();
    let mut b = Browser::new(&f).await;
    let p = code_login(&mut b, &code).await;
    assert_eq!((p.status, p.location.as_str()), (303, "/papan"), "{p:?}");

    f.restart().await;
    // Still within the code's window: only its use can refuse it.
    assert!(super::totp::step_of(&secret, &code, now()).is_some());
    let mut b = Browser::new(&f).await;
    let p = code_login(&mut b, &code).await;
    assert_eq!(p.status, 401, "{p:?}");
    assert!(p.body.contains("sudah dipakai"), "{}", p.body);
    assert!(!b.cookies.contains_key("siaga_sesi"));
    // It counted: with four wrong codes more, five failures lock the name.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let csrf = b.get("/masuk/kode").await.csrf();
    for i in 0..3 {
        let p = b
            .post("/masuk/kode", &[("kode", wrong), ("csrf", &csrf)])
            .await;
        assert_eq!(p.status, 401, "wrong code {i}: {p:?}");
    }
    let p = b
        .post("/masuk/kode", &[("kode", wrong), ("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 429, "{p:?}");
    assert!(p.body.contains("dikunci"), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_pages_share_the_grpc_limit_of_calls_in_flight() {
    use siaga_proto::v1::devices_client::DevicesClient;
    let f = Fixture::start_web().await;
    set_password(&f, "hd", "rahasia-helpdesk-1").await;
    set_password(&f, "kadis", "rahasia-kadis-123").await;
    let mut hd = Browser::new(&f).await;
    assert_eq!(hd.log_in("hd", "rahasia-helpdesk-1").await.status, 303);
    let mut kadis = Browser::new(&f).await;
    assert_eq!(kadis.log_in("kadis", "rahasia-kadis-123").await.status, 303);
    assert_eq!(hd.get("/papan").await.status, 200);
    // hd's script holds as many gRPC calls open as one person may.
    let mut streams = Vec::new();
    for _ in 0..crate::api::limits::MAX_CALLS_PER_USER {
        let mut s = DevicesClient::new(f.channel("hd"))
            .watch_devices(v1::WatchDevicesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(s.message().await.unwrap().is_some(), "the first snapshot");
        streams.push(s);
    }
    // hd's page now waits its turn, and says so.
    let p = hd.get("/papan").await;
    assert_eq!(p.status, 429, "{p:?}");
    assert_eq!(p.retry_after, "1", "{p:?}");
    assert!(p.body.contains("Terlalu banyak permintaan"), "{}", p.body);
    assert_eq!(hd.get("/tiket").await.status, 429);
    // Another person is served meanwhile.
    let p = kadis.get("/papan").await;
    assert_eq!(p.status, 200, "{p:?}");
    // A stream that ends gives its slot back to the pages too.
    drop(streams.pop());
    for i in 0.. {
        let p = hd.get("/papan").await;
        if p.status == 200 {
            break;
        }
        assert_eq!(p.status, 429, "{p:?}");
        assert!(i < 250, "the ended stream's slot never came back");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
