//! The web console: the collector's own HTTPS listener (`[web] listen`)
//! for the people who never open a terminal. Pages are server-rendered in
//! Bahasa Indonesia ([`pages`]); a person logs in with the password set by
//! `siaga user passwd` and gets a session cookie ([`session`]).
//!
//! No rule of its own: a page asks the same policy table as the gRPC gate
//! (the board is `Devices/ListDevices`) with a [`Caller`] made from the
//! same user file, and calls the same domain code the service does. Logins
//! and logouts go to the same API audit trail as the gate's records.
//!
//! The listener runs as one task beside the gRPC server, with its own
//! connection cap and timeouts: whatever happens here ends at most this
//! task, never the gRPC side.

mod access;
mod assets;
pub mod chart;
pub mod device;
pub mod opd;
pub mod pages;
pub mod register;
pub mod report;
pub mod session;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
pub mod tickets;
pub mod totp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::Caller;
use crate::api::gate::{AUDIT_FILE, allowed, append_audit};
use crate::api::policy::rule_of;
use crate::hub::Hub;
use crate::metrics::{Listener, OutcomeLabel};
use pages::OpdCounts;
use session::{LoginGuard, Sessions, same, token};

/// The session cookie.
pub const SESSION_COOKIE: &str = "siaga_sesi";
/// The cookie that carries the login form's CSRF token (double submit).
pub const CSRF_COOKIE: &str = "siaga_csrf";
/// The cookie of a pending login (password right, second factor asked):
/// it names the pending login only, never a session.
pub const PENDING_COOKIE: &str = "siaga_masuk";
/// Connections served at once; more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 256;
/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must arrive within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// The largest form accepted.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Password checks (argon2id: deliberately slow, ~19 MiB each) at once.
const HASHING_AT_ONCE: usize = 2;

/// What the console keeps between requests.
pub struct Web {
    hub: Arc<Hub>,
    sessions: Mutex<Sessions>,
    guard: Mutex<LoginGuard>,
    hashing: Semaphore,
    audit: PathBuf,
    calendar: crate::sop::Calendar,
    /// `[web] trusted_proxies`: whose `X-Forwarded-For` is believed.
    proxies: Vec<ipnet::IpNet>,
    /// Logins waiting for their second factor's code.
    pending: Mutex<session::PendingLogins>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web").finish_non_exhaustive()
    }
}

impl Web {
    /// The console of `hub`'s collector; times shown in `calendar`'s zone;
    /// `proxies` are the reverse proxies whose `X-Forwarded-For` is believed.
    pub fn new(
        hub: Arc<Hub>,
        calendar: crate::sop::Calendar,
        proxies: Vec<ipnet::IpNet>,
    ) -> Arc<Web> {
        let audit = hub.data_dir.join(AUDIT_FILE);
        Arc::new(Web {
            hub,
            sessions: Mutex::default(),
            guard: Mutex::default(),
            hashing: Semaphore::new(HASHING_AT_ONCE),
            audit,
            calendar,
            proxies,
            pending: Mutex::default(),
        })
    }

    fn count(&self, outcome: &'static str) {
        self.hub
            .metrics
            .web_logins
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    async fn audit(&self, user: &str, opd: Option<&str>, action: &str, outcome: impl Into<String>) {
        append_audit(&self.audit, user, opd, action, outcome.into()).await;
    }

    /// The session the request's cookie names, kept alive, with its id.
    fn session(&self, headers: &HeaderMap) -> Option<(String, session::Session)> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let s = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .touch(&id, Instant::now())?;
        Some((id, s))
    }

    /// The person of a session as the gate would see them, read from their
    /// user file now: a removed person's session ends, and so does one
    /// whose password changed since the login.
    async fn caller(&self, id: &str, s: &session::Session) -> Option<Caller> {
        let hub = self.hub.clone();
        let name = s.user.clone();
        let user = tokio::task::spawn_blocking(move || hub.user(&name))
            .await
            .ok()
            .flatten();
        match user {
            Some(u) if u.password_hash.as_deref() == Some(s.password.as_str()) => Some(Caller {
                name: u.name,
                roles: u.roles,
                opd: u.opd,
            }),
            _ => {
                self.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .close(id);
                None
            }
        }
    }
}

/// The TLS configuration of the console: `cert_pem` and `key_pem`, no
/// client certificate asked for, HTTP/1.1.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the web certificate: {e}"))?;
    if certs.is_empty() {
        return Err("the web certificate: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("the web key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the web certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The address a request came from: the connection's peer, or behind a
/// trusted reverse proxy the client address the proxy names.
#[derive(Debug, Clone, Copy)]
struct Peer(std::net::IpAddr);

/// Most `X-Forwarded-For` hops looked at (a longer chain is cut from the left:
/// only the hops next to us can be checked against `proxies` anyway).
const MAX_FORWARDED_HOPS: usize = 16;

/// The client of a request from `peer`. When `peer` is one of `proxies`,
/// the rightmost `X-Forwarded-For` hop that is not a trusted proxy itself
/// (the hops further left were written by the client and prove nothing);
/// a header that does not parse leaves the proxy as the client. From any
/// other peer the header is ignored: a browser cannot pick its address.
fn client_of(peer: SocketAddr, headers: &HeaderMap, proxies: &[ipnet::IpNet]) -> std::net::IpAddr {
    let trusted = |ip: std::net::IpAddr| proxies.iter().any(|n| n.contains(&ip));
    if !trusted(peer.ip()) {
        return peer.ip();
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) if trusted(ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer.ip(),
        }
    }
    peer.ip()
}

/// The console's routes.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/masuk", get(login_page).post(login))
        .route("/masuk/kode", get(code_page).post(login_code))
        .route("/keluar", post(logout))
        .route("/papan", get(board))
        .route("/papan/langsung", get(board_live))
        .route("/tiket", get(tickets::queue))
        .route(
            "/tiket/baru",
            get(register::letter_page).post(register::new_letter),
        )
        .route("/register", get(register::register))
        .route("/tiket/{number}", get(tickets::ticket_page))
        .route("/tiket/{number}/disposisi", post(tickets::dispose))
        .route("/tiket/{number}/kembalikan", post(tickets::return_back))
        .route("/tiket/{number}/status", post(tickets::update))
        .route("/tiket/{number}/terima", post(tickets::acknowledge))
        .route("/tiket/{number}/ukur", post(tickets::measure))
        .route("/tiket/{number}/laporan", get(report::report_page))
        .route("/tiket/{number}/laporan.pdf", get(report::report_pdf))
        .route(assets::HTMX_PATH, get(assets::htmx))
        .route(assets::SSE_PATH, get(assets::sse))
        .route("/opd/{id}", get(opd::opd_page))
        .route("/perangkat/{id}", get(device::device_page))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            calls_in_flight,
        ))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(web)
}

/// Holds each logged-in person's request to the same per-person limit of
/// calls in flight as the gRPC gate, counted in the same place
/// ([`Hub::calls`](crate::hub::Hub::calls)): gRPC calls and pages take
/// slots from one count. Over it: 429 with `Retry-After`. A request
/// without a session (the login) takes no slot; a live board's stream
/// gives its slot back once it is open (a wall screen would otherwise
/// hold one for good).
async fn calls_in_flight(
    State(web): State<Arc<Web>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some((_, s)) = web.session(req.headers()) else {
        return next.run(req).await;
    };
    let Some(_slot) = web.hub.calls.permit(&s.user) else {
        tracing::warn!(user = %s.user, "web request over the person's calls in flight; refused");
        let mut r = html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::notice(
                "Terlalu banyak permintaan",
                &format!(
                    "Sudah ada {} permintaan Anda yang sedang berjalan, batas untuk satu \
                     orang. Tunggu sampai salah satunya selesai, lalu coba lagi.",
                    web.hub.calls.per_person()
                ),
            ),
            vec![],
        );
        if let Ok(v) = HeaderValue::from_str(&crate::api::gate::RETRY_AFTER.as_secs().to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    };
    next.run(req).await
}

/// Serves the console on `listener` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    web: Arc<Web>,
    cancel: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let router = router(web.clone());
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut errors =
        crate::listen::AcceptErrors::new("web", web.hub.metrics.accept_errors_of(Listener::Web));
    while let Some((permit, stream, peer)) =
        crate::listen::next_connection(&listener, &permits, &mut errors, &cancel).await
    {
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let cancel = cancel.clone();
        let proxies = web.proxies.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "web TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "web TLS handshake timed out");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |mut req: http::Request<_>| {
                let client = client_of(peer, req.headers(), &proxies);
                req.extensions_mut().insert(Peer(client));
                let mut router = router.clone();
                async move {
                    use tower::Service as _;
                    router.call(req).await
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_FORM_BYTES * 2)
                .serve_connection(TokioIo::new(tls), svc);
            tokio::select! {
                r = tokio::time::timeout(CONNECTION_LIFETIME, conn) => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "web connection"),
                    Err(_) => tracing::debug!(%peer, "web connection closed after its lifetime"),
                },
                _ = cancel.cancelled() => {}
            }
        });
    }
}

/// The value of cookie `name` in the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: only over HTTPS, never to scripts, never sent
/// along from another site; `max_age` 0 deletes it.
fn set_cookie(name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let v = format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        max_age.as_secs()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// An HTML answer with the console's headers: no caching, no framing, no
/// script or resource but the console's own (the vendored scripts and the
/// live board's event stream), no inline script.
fn html(status: StatusCode, markup: maud::Markup, cookies: Vec<HeaderValue>) -> Response {
    let mut r = (status, markup.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; \
             style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
    r
}

/// A `303 See Other` to `to`, setting `cookies`.
fn redirect(to: &'static str, cookies: Vec<HeaderValue>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static(to));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
    r
}

async fn root(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if web.session(&headers).is_some() {
        redirect("/papan", vec![])
    } else {
        redirect("/masuk", vec![])
    }
}

async fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::notice("Tidak ditemukan", "Halaman ini tidak ada."),
        vec![],
    )
}

/// The login form with a fresh CSRF token (also in its cookie).
fn login_form(status: StatusCode, name: &str, message: Option<&str>) -> Response {
    let csrf = token();
    html(
        status,
        pages::login(&csrf, name, message),
        vec![set_cookie(CSRF_COOKIE, &csrf, session::IDLE)],
    )
}

/// The second step's form of pending login `p`.
fn code_form(status: StatusCode, p: &session::Pending, message: Option<&str>) -> Response {
    html(status, pages::login_code(&p.csrf, &p.user, message), vec![])
}

async fn login_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if web.session(&headers).is_some() {
        return redirect("/papan", vec![]);
    }
    login_form(StatusCode::OK, "", None)
}

/// The login form's fields (missing ones are empty, and refused).
#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    nama: String,
    #[serde(default)]
    sandi: String,
    #[serde(default)]
    csrf: String,
}

/// The second step's fields.
#[derive(Debug, Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf: String,
    /// The second factor's six-digit code.
    #[serde(default)]
    kode: String,
}

/// What the person reads when the name or the password is wrong (the same
/// for a name that does not exist).
const WRONG: &str = "Nama pengguna atau kata sandi salah.";

fn locked_message(left: Duration) -> String {
    let minutes = left.as_secs().div_ceil(60).max(1);
    format!(
        "Terlalu banyak percobaan masuk yang gagal ({} kali dalam {} menit). Masuk dikunci \
         sementara; coba lagi dalam {minutes} menit, atau hubungi admin.",
        session::MAX_FAILURES,
        session::WINDOW.as_secs() / 60
    )
}

async fn login(
    State(web): State<Arc<Web>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    if f.csrf.is_empty() || !same(&f.csrf, &expected) {
        web.count("bad_form");
        tracing::warn!(%peer, "web login form without a valid CSRF token; refused");
        return login_form(
            StatusCode::FORBIDDEN,
            "",
            Some("Formulir ini sudah kedaluwarsa atau tidak sah. Silakan coba masuk lagi."),
        );
    }
    let name = f.nama.trim().to_string();
    let addr = peer.to_string();
    let now = Instant::now();
    let locked = web
        .guard
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .locked(&name, &addr, now);
    if let Some(left) = locked {
        web.count("locked_out");
        web.audit(
            &name,
            None,
            "web/login",
            format!("refused: locked out ({addr})"),
        )
        .await;
        return login_form(
            StatusCode::TOO_MANY_REQUESTS,
            &name,
            Some(&locked_message(left)),
        );
    }
    let fits = !name.is_empty()
        && name.chars().count() <= crate::api::limits::len::ID
        && f.sandi.chars().count() <= crate::users::MAX_PASSWORD;
    let user = if fits {
        let hub = web.hub.clone();
        let lookup = name.clone();
        tokio::task::spawn_blocking(move || hub.user(&lookup))
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let opd = user.as_ref().and_then(|u| u.opd.clone());
    let fail = async |why: &str, message: String, status: StatusCode| {
        let now_locked = web.guard.lock().unwrap_or_else(|p| p.into_inner()).failed(
            &name,
            &addr,
            Instant::now(),
        );
        if now_locked {
            web.count("locked_out");
            web.audit(
                &name,
                opd.as_deref(),
                "web/login",
                format!(
                    "refused: {why} ({addr}); locked out for {} min",
                    session::WINDOW.as_secs() / 60
                ),
            )
            .await;
            return login_form(
                StatusCode::TOO_MANY_REQUESTS,
                &name,
                Some(&locked_message(session::WINDOW)),
            );
        }
        web.audit(
            &name,
            opd.as_deref(),
            "web/login",
            format!("refused: {why} ({addr})"),
        )
        .await;
        login_form(status, &name, Some(&message))
    };
    let Some(user) = user else {
        // As long as a wrong password takes: the time does not tell
        // whether the name exists.
        if let Ok(_slot) = web.hashing.acquire().await {
            let password = f.sandi;
            let _ = tokio::task::spawn_blocking(move || {
                crate::users::verify_password(&password, dummy_hash())
            })
            .await;
        }
        web.count("failed");
        return fail(
            "unknown user or wrong password",
            WRONG.into(),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    };
    let Some(hash) = user.password_hash.clone() else {
        web.count("no_password");
        return fail(
            "no password set",
            format!(
                "Akun {name} belum mempunyai kata sandi untuk konsol web. Minta admin \
                 menetapkannya dengan `siaga user passwd {name}`."
            ),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    };
    let ok = match web.hashing.acquire().await {
        Ok(_slot) => {
            let password = f.sandi;
            tokio::task::spawn_blocking(move || crate::users::verify_password(&password, &hash))
                .await
                .unwrap_or(false)
        }
        Err(_) => false,
    };
    if !ok {
        web.count("failed");
        return fail("wrong password", WRONG.into(), StatusCode::UNAUTHORIZED).await;
    }
    if user.totp_secret.is_some() {
        // The password was right: the code is asked on a form of its own,
        // bound to this browser by a pending login's cookie. Nothing is
        // unlocked, and the name's failures stay counted, until the code.
        let id = web.pending.lock().unwrap_or_else(|p| p.into_inner()).open(
            &user.name,
            &hash_of(&user),
            Instant::now(),
        );
        web.count("code_asked");
        web.audit(
            &user.name,
            opd.as_deref(),
            "web/login",
            format!("password ok, second-factor code asked ({addr})"),
        )
        .await;
        return redirect(
            "/masuk/kode",
            vec![
                set_cookie(PENDING_COOKIE, &id, session::PENDING),
                set_cookie(CSRF_COOKIE, "", Duration::ZERO),
            ],
        );
    }
    logged_in(&web, &user, &addr, "password", vec![]).await
}

fn hash_of(user: &crate::users::User) -> String {
    user.password_hash.clone().unwrap_or_default()
}

/// Opens the session of `user`, who passed every factor (`factor` says
/// which), and sends them to the board.
async fn logged_in(
    web: &Web,
    user: &crate::users::User,
    addr: &str,
    factor: &str,
    mut cookies: Vec<HeaderValue>,
) -> Response {
    web.guard
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .succeeded(&user.name);
    let id = web.sessions.lock().unwrap_or_else(|p| p.into_inner()).open(
        &user.name,
        &hash_of(user),
        Instant::now(),
    );
    web.count("ok");
    web.audit(
        &user.name,
        user.opd.as_deref(),
        "web/login",
        format!("ok ({addr}; {factor})"),
    )
    .await;
    tracing::info!(user = %user.name, %addr, factor, "web console login");
    cookies.push(set_cookie(SESSION_COOKIE, &id, session::IDLE));
    cookies.push(set_cookie(CSRF_COOKIE, "", Duration::ZERO));
    redirect("/papan", cookies)
}

/// The pending login the request's cookie names, with its id.
fn pending_of(web: &Web, headers: &HeaderMap) -> Option<(String, session::Pending)> {
    let id = cookie(headers, PENDING_COOKIE)?;
    let p = web
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id, Instant::now())?;
    Some((id, p))
}

/// What the person reads when the pending login is gone (expired, taken,
/// or never there).
const PENDING_GONE: &str =
    "Waktu untuk memasukkan kode sudah habis atau tidak sah. Silakan masuk lagi.";

/// `GET /masuk/kode`: the code form of the pending login, or back to the
/// first step.
async fn code_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    match pending_of(&web, &headers) {
        Some((_, p)) => code_form(StatusCode::OK, &p, None),
        None => redirect(
            "/masuk",
            vec![set_cookie(PENDING_COOKIE, "", Duration::ZERO)],
        ),
    }
}

/// `POST /masuk/kode`: the second factor's code of a pending login. A
/// wrong or used code counts toward the same lockout as a wrong password;
/// a good one takes the pending login (once) and opens the session.
async fn login_code(
    State(web): State<Arc<Web>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    let clear = || set_cookie(PENDING_COOKIE, "", Duration::ZERO);
    let Some((id, p)) = pending_of(&web, &headers) else {
        web.count("bad_form");
        let mut r = login_form(StatusCode::UNAUTHORIZED, "", Some(PENDING_GONE));
        r.headers_mut().append(header::SET_COOKIE, clear());
        return r;
    };
    if f.csrf.is_empty() || !same(&f.csrf, &p.csrf) {
        web.count("bad_form");
        tracing::warn!(%peer, user = %p.user, "web code form without its CSRF token; refused");
        return code_form(
            StatusCode::FORBIDDEN,
            &p,
            Some("Formulir ini sudah kedaluwarsa atau tidak sah. Masukkan kodenya lagi."),
        );
    }
    let name = p.user.clone();
    let addr = peer.to_string();
    let drop_pending = || {
        web.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close(&id);
    };
    let locked =
        web.guard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .locked(&name, &addr, Instant::now());
    if let Some(left) = locked {
        drop_pending();
        web.count("locked_out");
        web.audit(
            &name,
            None,
            "web/login",
            format!("refused: locked out ({addr})"),
        )
        .await;
        let mut r = login_form(
            StatusCode::TOO_MANY_REQUESTS,
            &name,
            Some(&locked_message(left)),
        );
        r.headers_mut().append(header::SET_COOKIE, clear());
        return r;
    }
    let hub = web.hub.clone();
    let lookup = name.clone();
    let user = tokio::task::spawn_blocking(move || hub.user(&lookup))
        .await
        .ok()
        .flatten();
    // The person, password and factor the first step checked, still so.
    let Some((user, secret)) = user
        .filter(|u| u.password_hash.as_deref() == Some(p.password.as_str()))
        .and_then(|u| u.totp_secret.clone().map(|s| (u, s)))
    else {
        drop_pending();
        let mut r = login_form(StatusCode::UNAUTHORIZED, &name, Some(PENDING_GONE));
        r.headers_mut().append(header::SET_COOKIE, clear());
        return r;
    };
    let now_s = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    let taken = match totp::step_of(&secret, &f.kode, now_s) {
        None => Ok(false),
        Some(step) => {
            let users = crate::admin::HubUsers(web.hub.clone());
            let who = name.clone();
            tokio::task::spawn_blocking(move || crate::users::take_totp_step(&users, &who, step))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        }
    };
    match taken {
        Ok(true) => {
            drop_pending();
            logged_in(&web, &user, &addr, "password+totp", vec![clear()]).await
        }
        Ok(false) => {
            web.count("failed");
            let now_locked = web.guard.lock().unwrap_or_else(|p| p.into_inner()).failed(
                &name,
                &addr,
                Instant::now(),
            );
            let why = "wrong or reused second-factor code";
            if now_locked {
                drop_pending();
                web.count("locked_out");
                web.audit(
                    &name,
                    user.opd.as_deref(),
                    "web/login",
                    format!(
                        "refused: {why} ({addr}); locked out for {} min",
                        session::WINDOW.as_secs() / 60
                    ),
                )
                .await;
                let mut r = login_form(
                    StatusCode::TOO_MANY_REQUESTS,
                    &name,
                    Some(&locked_message(session::WINDOW)),
                );
                r.headers_mut().append(header::SET_COOKIE, clear());
                return r;
            }
            web.audit(
                &name,
                user.opd.as_deref(),
                "web/login",
                format!("refused: {why} ({addr})"),
            )
            .await;
            code_form(
                StatusCode::UNAUTHORIZED,
                &p,
                Some(
                    "Kode autentikator salah atau sudah dipakai. Tunggu kode berikutnya dan coba lagi.",
                ),
            )
        }
        Err(e) => {
            tracing::error!(user = %name, error = %e, "cannot record the second-factor code's step");
            code_form(
                StatusCode::SERVICE_UNAVAILABLE,
                &p,
                Some("Kode tidak dapat dicatat saat ini. Coba lagi sebentar lagi."),
            )
        }
    }
}

/// A hash no password matches in practice, checked for unknown names.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crate::users::hash_password(&token()).unwrap_or_default())
}

/// The logout form's field.
#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let clear = vec![set_cookie(SESSION_COOKIE, "", Duration::ZERO)];
    let Some((id, s)) = web.session(&headers) else {
        return redirect("/masuk", clear);
    };
    if f.csrf.is_empty() || !same(&f.csrf, &s.csrf) {
        tracing::warn!(user = %s.user, "web logout without the session's CSRF token; refused");
        return html(
            StatusCode::FORBIDDEN,
            pages::notice(
                "Ditolak",
                "Formulir ini tidak sah untuk sesi Anda. Muat ulang halaman dan coba lagi.",
            ),
            vec![],
        );
    }
    web.sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .close(&id);
    let (hub, name) = (web.hub.clone(), s.user.clone());
    let opd = tokio::task::spawn_blocking(move || hub.user(&name).and_then(|u| u.opd))
        .await
        .ok()
        .flatten();
    web.audit(&s.user, opd.as_deref(), "web/logout", "ok").await;
    tracing::info!(user = %s.user, "web console logout");
    redirect("/masuk", clear)
}

async fn board(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let Some((id, s)) = web.session(&headers) else {
        return redirect("/masuk", vec![]);
    };
    let Some(caller) = web.caller(&id, &s).await else {
        return redirect(
            "/masuk",
            vec![set_cookie(SESSION_COOKIE, "", Duration::ZERO)],
        );
    };
    let nav = tickets::nav(&caller);
    match board_rows(&web, caller).await {
        Ok((opds, at)) => html(
            StatusCode::OK,
            pages::board(&s.user, &s.csrf, nav, &opds, &at),
            vec![],
        ),
        Err(page) => page,
    }
}

/// The board's rows and its time for `caller`, or the page that says why
/// not. The board is the device listing: the same rule as
/// Devices/ListDevices.
async fn board_rows(web: &Arc<Web>, caller: Caller) -> Result<(Vec<OpdCounts>, String), Response> {
    let Some(rule) = rule_of("/siaga.v1.Devices/ListDevices") else {
        return Err(html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::notice("Galat", "Aturan akses papan status tidak ditemukan."),
            vec![],
        ));
    };
    if let Err(e) = allowed(rule, &caller) {
        return Err(html(
            StatusCode::FORBIDDEN,
            pages::notice("Ditolak", &e.to_string()),
            vec![],
        ));
    }
    let hub = web.hub.clone();
    let rows = tokio::task::spawn_blocking(move || opd_counts(&hub, &caller)).await;
    let opds = match rows {
        Ok(Ok(o)) => o,
        failed => {
            match failed {
                Ok(Err(e)) => tracing::error!(error = %e, "web board"),
                Err(e) => tracing::error!(error = %e, "web board task"),
                Ok(Ok(_)) => {}
            }
            return Err(html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::notice("Galat", "Papan status tidak dapat dibaca saat ini."),
                vec![],
            ));
        }
    };
    let at = web.calendar.local(chrono::Utc::now());
    let at = format!(
        "{} {}",
        at.format("%d-%m-%Y %H:%M"),
        web.calendar.zone_abbr()
    );
    Ok((opds, at))
}

/// How often a live board looks again when no event came (a device whose
/// readings stop turns stale without one).
const LIVE_TICK: Duration = Duration::from_secs(1);

/// `/papan/langsung`: the board's body as server-sent events, sent again
/// whenever it changes (a recorded event, or a look each [`LIVE_TICK`]).
/// The stream ends with the session (logout, idle expiry, removal) and
/// does not keep an idle session alive.
async fn board_live(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let Some((id, s)) = web.session(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Some(caller) = web.caller(&id, &s).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if let Err(page) = board_rows(&web, caller).await {
        return page;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(4);
    let mut feed = web.hub.health.handle.shared().feed.subscribe();
    let cancel = web.hub.cancel.clone();
    tokio::spawn(async move {
        let mut last = String::new();
        let mut tick = tokio::time::interval(LIVE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let open = web
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open_now(&id, Instant::now());
            if !open {
                return;
            }
            let Some(caller) = web.caller(&id, &s).await else {
                return;
            };
            if let Ok((opds, at)) = board_rows(&web, caller).await {
                let body = pages::board_body(&opds, &at).into_string();
                if body != last {
                    if tx.send(Ok(Event::default().data(&body))).await.is_err() {
                        return;
                    }
                    last = body;
                }
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
                _ = feed.recv() => {}
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Every OPD `caller` sees, with its devices counted by shown state (the
/// Devices service's own listing), worst first. A device a maintenance
/// window covers now counts as in maintenance, whatever its state: no
/// ticket opens for it, and it does not make its OPD look broken.
fn opd_counts(hub: &Hub, caller: &Caller) -> Result<Vec<OpdCounts>, crate::api::ApiError> {
    let inv = hub.inventory();
    let windows = hub
        .health
        .store
        .windows()
        .map_err(|e| crate::api::ApiError::internal("reading the maintenance windows", e))?;
    let now = crate::ingest::now_us();
    let mut out: std::collections::BTreeMap<String, OpdCounts> = inv
        .opds
        .values()
        .filter(|o| caller.sees(&o.id))
        .map(|o| {
            (
                o.id.clone(),
                OpdCounts {
                    id: o.id.clone(),
                    name: o.name.clone(),
                    ..Default::default()
                },
            )
        })
        .collect();
    for d in crate::devices::api::board_devices(hub, caller, &None)? {
        let subject = crate::health::Subject::device(d.id.clone());
        let in_window = windows.iter().any(|w| w.covers(&subject, &d.opd, now));
        if let Some(o) = out.get_mut(&d.opd) {
            if in_window {
                o.maintenance += 1;
            } else {
                o.count(d.state());
            }
        }
    }
    let mut v: Vec<OpdCounts> = out.into_values().collect();
    v.sort_by_key(OpdCounts::severity);
    Ok(v)
}
