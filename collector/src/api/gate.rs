//! The gate: the one tower layer in front of every service. For each call
//! it finds the RPC's [`policy`] entry (none: refused), identifies the
//! person from the client certificate (revoked, unknown or an agent's:
//! refused), checks the role, limits the person's calls in flight, hands
//! the handler a [`Caller`] in the request's extensions, and appends every
//! state-changing call — done or refused — to the API audit trail
//! (`<data_dir>/api-audit.jsonl`: time, user, OPD, RPC, outcome).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::ApiError;
use super::policy::{self, Allow, Rule};
use crate::hub::Hub;
use crate::pki::Identity;

/// Name of the API audit trail in the data directory.
pub const AUDIT_FILE: &str = "api-audit.jsonl";

/// The person calling, as the gate identified them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User name (from the certificate).
    pub name: String,
    /// Their roles (from their user file).
    pub roles: Vec<crate::role::Role>,
    /// The OPD they work for, if any.
    pub opd: Option<String>,
}

impl Caller {
    /// Whether they hold `role`.
    pub fn has(&self, role: impl AsRef<str>) -> bool {
        self.roles.iter().any(|r| r == role.as_ref())
    }

    /// Whether they see every OPD (a province role).
    pub fn province(&self) -> bool {
        !crate::users::only_opd_roles(&self.roles)
    }

    /// The one OPD they are held to, or `None` when they see every OPD.
    pub fn held_to(&self) -> Option<&str> {
        if self.province() {
            None
        } else {
            // An OPD-held person without an OPD sees no OPD at all.
            Some(self.opd.as_deref().unwrap_or(""))
        }
    }

    /// Whether they see `opd`'s data.
    pub fn sees(&self, opd: &str) -> bool {
        self.held_to().is_none_or(|own| own == opd)
    }

    /// `Ok` when they see `opd`; else [`ApiError::NotFound`] with `missing`
    /// (the same answer as for an object that does not exist).
    pub fn see(&self, opd: &str, missing: impl FnOnce() -> String) -> Result<(), ApiError> {
        if self.sees(opd) {
            Ok(())
        } else {
            Err(ApiError::NotFound(missing()))
        }
    }

    /// Who they are, for messages: `budi (helpdesk)`.
    pub fn describe(&self) -> String {
        if self.roles.is_empty() {
            format!("{} (no role)", self.name)
        } else {
            format!("{} ({})", self.name, crate::role::join(&self.roles, ", "))
        }
    }
}

/// The [`Caller`] the gate put in `req`. A handler that finds none was
/// reached without the gate: a wiring bug, refused.
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, Status> {
    req.extensions().get::<Caller>().cloned().ok_or_else(|| {
        tracing::error!("a people's call reached its handler without passing the policy gate");
        Status::internal("the call did not pass the collector's policy gate")
    })
}

/// Whether `rule` lets `caller` in; the refusal says why and what would.
pub fn allowed(rule: &Rule, caller: &Caller) -> Result<(), ApiError> {
    let ok = match rule.allow {
        Allow::People | Allow::Public => true,
        Allow::Agents => false,
        Allow::Province => caller.province(),
        Allow::Roles(roles) => roles.iter().any(|r| caller.has(r)),
    };
    if ok {
        return Ok(());
    }
    let who = match rule.allow {
        Allow::Agents => "agents".to_string(),
        Allow::Province => "the province team (any role but pemohon)".to_string(),
        Allow::Roles(roles) => crate::role::join(roles, " or "),
        Allow::People | Allow::Public => unreachable_allow(),
    };
    Err(ApiError::Denied(format!(
        "{} is for {who}; you are {}",
        short(rule.rpc),
        caller.describe()
    )))
}

fn unreachable_allow() -> String {
    "everyone".into()
}

/// `Tickets/Void` of `/siaga.v1.Tickets/Void`.
pub fn short(rpc: &str) -> &str {
    rpc.rsplit_once('.').map_or(rpc, |(_, m)| m)
}

/// How long a person over the limit is told to wait before retrying (the
/// gRPC retry hint and the web's `Retry-After`).
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Each person's calls in flight, at most `per_person` at once. The hub
/// holds the one instance ([`Hub::calls`]); the gate and the web console
/// both take their slots from it.
///
/// [`Hub::calls`]: crate::hub::Hub::calls
#[derive(Debug)]
pub struct InFlight {
    per_person: usize,
    map: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl InFlight {
    /// The most calls one person may have in flight.
    pub const fn per_person(&self) -> usize {
        self.per_person
    }

    /// At most `per_person` calls each.
    pub fn new(per_person: usize) -> Self {
        InFlight {
            per_person,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more call of `user` (held until dropped), or `None`
    /// when they are at the limit.
    pub fn permit(&self, user: &str) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            // Forget people with nothing in flight, so the map stays small.
            if map.len() > 1024 {
                map.retain(|_, s| s.available_permits() < self.per_person);
            }
            map.entry(user.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_person)))
                .clone()
        };
        sem.try_acquire_owned().ok()
    }
}

/// What the gate keeps between calls.
#[derive(Debug)]
pub struct Gate {
    hub: Arc<Hub>,
    audit: PathBuf,
}

impl Gate {
    /// The gate of `hub`'s collector.
    pub fn new(hub: Arc<Hub>) -> Arc<Gate> {
        let audit = hub.data_dir.join(AUDIT_FILE);
        Arc::new(Gate { hub, audit })
    }

    /// The person behind a connection's certificates.
    pub async fn identify(&self, certs: Option<Arc<crate::auth::Certs>>) -> Result<Caller, Status> {
        let peer = crate::auth::peer_of(certs, &self.hub)?;
        let name = match &peer.identity {
            Identity::User { name } => name.clone(),
            agent @ Identity::Agent { .. } => {
                tracing::warn!(%agent, "an agent certificate was used on the people's API; refused");
                return Err(Status::permission_denied(
                    "the people's API is for people; this is an agent certificate",
                ));
            }
        };
        let hub = self.hub.clone();
        let lookup = name.clone();
        // A miss re-reads the users directory: off the async workers.
        let user = tokio::task::spawn_blocking(move || hub.user(&lookup))
            .await
            .map_err(|e| Status::internal(format!("looking up the user: {e}")))?;
        let Some(user) = user else {
            tracing::warn!(user = %name, "call from a user who is not enrolled here");
            return Err(Status::permission_denied(format!(
                "user {name:?} is not enrolled at this collector (ask the administrator: \
                 `siaga-collector enroll user --name {name} …`)"
            )));
        };
        Ok(Caller {
            name: user.name,
            roles: user.roles,
            opd: user.opd,
        })
    }

    /// Appends one record to the API audit trail (off the async workers),
    /// done before the caller hears the answer.
    async fn audit(&self, caller: &Caller, rpc: &str, outcome: String) {
        append_audit(
            &self.audit,
            &caller.name,
            caller.opd.as_deref(),
            rpc,
            outcome,
        )
        .await;
    }
}

/// Appends one record (time, user, OPD, RPC or action, outcome) to the API
/// audit trail at `path`, off the async workers. It returns once the record
/// is written (or its failure logged), so an answer is never sent before the
/// trail says what it was. The web console writes its logins and logouts
/// here too.
pub async fn append_audit(
    path: &std::path::Path,
    user: &str,
    opd: Option<&str>,
    rpc: &str,
    outcome: String,
) {
    let line = serde_json::json!({
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "user": user,
        "opd": opd,
        "rpc": rpc,
        "outcome": outcome,
    });
    let path = path.to_path_buf();
    let written = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let r = crate::safe_file::append(&path, crate::safe_file::PRIVATE)
            .map_err(|e| e.error)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = r {
            tracing::error!(file = %path.display(), error = %e, "cannot write the API audit trail");
        }
    })
    .await;
    if let Err(e) = written {
        tracing::error!(error = %e, "the API audit trail's writer failed");
    }
}

/// The layer of [`Gate`], for `Server::builder().layer(..)`.
#[derive(Debug, Clone)]
pub struct GateLayer {
    gate: Arc<Gate>,
}

impl GateLayer {
    /// The layer for `hub`'s collector.
    pub fn new(hub: Arc<Hub>) -> Self {
        GateLayer {
            gate: Gate::new(hub),
        }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> GateService<S> {
        GateService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// [`GateLayer`]'s service.
#[derive(Debug, Clone)]
pub struct GateService<S> {
    inner: S,
    gate: Arc<Gate>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for GateService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The ready service goes with this call; a clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let Some(rule) = policy::rule_of(&path) else {
                tracing::warn!(rpc = %path, "call of an RPC without a policy entry; refused");
                return Ok(Status::unimplemented(format!(
                    "{path}: no such call at this collector (is the client newer?)"
                ))
                .into_http());
            };
            if matches!(rule.allow, Allow::Agents | Allow::Public) {
                // The uplink checks agents' certificates itself.
                return inner.call(req).await;
            }
            let certs = req
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.peer_certs());
            let caller = match gate.identify(certs).await {
                Ok(c) => c,
                Err(s) => return Ok(s.into_http()),
            };
            if let Err(e) = allowed(rule, &caller) {
                tracing::warn!(user = %caller.name, rpc = %path, "refused by the policy");
                if rule.changes {
                    gate.audit(&caller, &path, format!("refused: {e}")).await;
                }
                return Ok(Status::from(e).into_http());
            }
            let Some(permit) = gate.hub.calls.permit(&caller.name) else {
                let mut s = Status::resource_exhausted(format!(
                    "{} calls of yours are in flight, the most one person may have; \
                     retry when one has finished",
                    gate.hub.calls.per_person()
                ));
                if let Ok(ms) = RETRY_AFTER.as_millis().to_string().parse() {
                    s.metadata_mut().insert("grpc-retry-pushback-ms", ms);
                }
                return Ok(s.into_http());
            };
            req.extensions_mut().insert(caller.clone());
            let resp = inner.call(req).await?;
            if rule.changes {
                gate.audit(&caller, &path, outcome(&resp)).await;
            }
            // The slot is held until the answer (a stream, too) has been sent.
            Ok(resp.map(|body| {
                Body::new(Held {
                    body,
                    _permit: permit,
                })
            }))
        })
    }
}

/// The outcome of a call as its response headers say (an error answer
/// carries its status in the headers; success carries it in trailers).
fn outcome(resp: &http::Response<Body>) -> String {
    let code = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    if code == 0 {
        return "ok".into();
    }
    let message = resp
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    refusal(tonic::Code::from(code), &message)
}

/// How a failed call's outcome reads on the audit trail (the web console
/// writes its calls of the same services with it too).
pub fn refusal(code: tonic::Code, message: &str) -> String {
    format!("{code:?}: {message}")
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decode(m: &str) -> String {
    let bytes = m.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response body that keeps the caller's slot until it is done.
struct Held {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn person(roles: &[&str], opd: Option<&str>) -> Caller {
        Caller {
            name: "x".into(),
            roles: roles.iter().map(|r| crate::role::Role::sop_id(r)).collect(),
            opd: opd.map(str::to_string),
        }
    }

    #[test]
    fn a_pemohon_sees_only_its_own_opd_and_province_roles_see_all() {
        let p = person(&["pemohon"], Some("dinkes"));
        assert_eq!(p.held_to(), Some("dinkes"));
        assert!(p.sees("dinkes") && !p.sees("dishub"));
        assert!(p.see("dishub", || "ticket 7 not found".into()).is_err());
        let hd = person(&["helpdesk"], Some("diskominfo"));
        assert!(hd.sees("dishub") && hd.held_to().is_none());
        // A pemohon with a province role too sees every OPD.
        assert!(person(&["pemohon", "kabid_aptika"], None).sees("dishub"));
        // Held to an OPD without one: sees none.
        assert!(!person(&["pemohon"], None).sees("dinkes"));
    }

    #[test]
    fn a_refusal_names_the_rpc_who_may_and_who_asked() {
        let rule = policy::rule_of("/siaga.v1.Admin/Backup").expect("rule");
        let e = allowed(rule, &person(&["helpdesk"], None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Admin/Backup is for admin; you are x (helpdesk)"
        );
        assert!(allowed(rule, &person(&["admin"], None)).is_ok());
    }

    #[test]
    fn one_person_has_at_most_the_limit_in_flight_and_others_are_not_held_up() {
        let f = InFlight::new(3);
        let held: Vec<_> = (0..3).map(|_| f.permit("budi").unwrap()).collect();
        assert!(f.permit("budi").is_none(), "a fourth call of budi's");
        assert!(f.permit("siti").is_some(), "siti is not held up by budi");
        drop(held);
        assert!(f.permit("budi").is_some(), "slots come back when calls end");
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b%25"), "a b%");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
