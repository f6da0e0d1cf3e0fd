//! SNMP trap receiver: linkDown/linkUp (v1, v2c, v3) turned into events the
//! moment they arrive, so a link fault is known within a second instead of
//! a poll interval.
//!
//! A trap counts only when it authenticates as the device its source address
//! belongs to: that device's own community (v1/v2c devices) or its own
//! SNMPv3 user with authentication, and privacy where the device has it
//! configured. A device without SNMP credentials in the inventory gets no
//! trap accepted. Refused traps are counted per device
//! (`siaga_agent_traps_refused_total`, `traps_refused` in its SNMP results)
//! and logged, and reported as a `traps_refused` event, at most once a
//! minute per device. A device that sends more
//! than [`STORM_TRAPS`] traps in [`STORM_WINDOW`] has the rest dropped and
//! counted, and one `trap_storm` event says how many.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use async_snmp::notification::NotificationReceiver;
use async_snmp::{
    AuthProtocol, AuthoritativeEngine, Notification, NotificationAcceptance, Oid, PrivProtocol,
    SecurityLevel, Value, Version,
};
use siaga_proto::v1::{Device, Event, Link, SnmpTarget};
use siaga_proto::words::SnmpVersion;
use tokio_util::sync::CancellationToken;

use crate::error::ProbeError;
use crate::metrics::Metrics;

/// Traps one device may send per [`STORM_WINDOW`] before the rest are
/// dropped (and summarised in one `trap_storm` event).
pub const STORM_TRAPS: u32 = 20;
/// The window of the trap-storm limit.
pub const STORM_WINDOW: Duration = Duration::from_secs(10);
/// Interface names taken from one trap.
const TRAP_NAMES: usize = 4;
/// At most one log line per device per this long about refused traps.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(60);

const LINK_DOWN: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 3];
const LINK_UP: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 4];
const COLD_START: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 1];
const WARM_START: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 2];
const IF_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

/// The device a trap came from, as the inventory knows it.
#[derive(Debug, Clone, Default)]
pub struct TrapSource {
    /// Inventory device id.
    pub device: String,
    /// The device's inventory links (to name the link a trap is about).
    pub links: Vec<Link>,
    /// The device's SNMP credentials: the only ones its traps may carry.
    pub snmp: Option<SnmpTarget>,
}

/// Why a trap was not taken as its source device's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapRefusal {
    /// The device has no SNMP credentials in the inventory.
    NoCredentials,
    /// v1/v2c trap for an SNMPv3 device, or SNMPv3 for a v1/v2c one.
    WrongVersion,
    /// Not the device's community.
    WrongCommunity,
    /// Not the device's SNMPv3 user.
    WrongUser,
    /// SNMPv3 without authentication, or without the privacy the device has.
    SecurityTooLow,
}

impl std::fmt::Display for TrapRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrapRefusal::NoCredentials => "the device has no SNMP credentials in the inventory",
            TrapRefusal::WrongVersion => "not the SNMP version the device is configured with",
            TrapRefusal::WrongCommunity => "not the device's community",
            TrapRefusal::WrongUser => "not the device's SNMPv3 user",
            TrapRefusal::SecurityTooLow => "below the device's SNMPv3 security level",
        })
    }
}

fn has_privacy(t: &SnmpTarget) -> bool {
    !matches!(t.priv_protocol.to_ascii_lowercase().as_str(), "" | "none")
}

/// Whether `n` authenticates as the device whose credentials are `target`.
pub fn authenticate(n: &Notification, target: Option<&SnmpTarget>) -> Result<(), TrapRefusal> {
    let Some(t) = target.filter(|t| !t.version.is_empty()) else {
        return Err(TrapRefusal::NoCredentials);
    };
    let v3_device = t.snmp_version() == Some(SnmpVersion::V3);
    match n {
        Notification::TrapV1 { community, .. }
        | Notification::TrapV2c { community, .. }
        | Notification::InformV2c { community, .. } => {
            if v3_device {
                return Err(TrapRefusal::WrongVersion);
            }
            if t.community.is_empty() || community.as_bytes() != t.community.as_bytes() {
                return Err(TrapRefusal::WrongCommunity);
            }
            Ok(())
        }
        Notification::TrapV3 {
            username,
            security_level,
            ..
        }
        | Notification::InformV3 {
            username,
            security_level,
            ..
        } => {
            if !v3_device {
                return Err(TrapRefusal::WrongVersion);
            }
            if t.user.is_empty() || username.as_ref() != t.user.as_bytes() {
                return Err(TrapRefusal::WrongUser);
            }
            let needed = if has_privacy(t) {
                SecurityLevel::AuthPriv
            } else {
                SecurityLevel::AuthNoPriv
            };
            if *security_level < needed {
                return Err(TrapRefusal::SecurityTooLow);
            }
            Ok(())
        }
    }
}

/// The trap-storm limit of one device: I/O-free, time passed in.
#[derive(Debug, Clone, Default)]
pub struct StormLimit {
    window_start: Option<Instant>,
    passed: u32,
    suppressed: u32,
}

impl StormLimit {
    /// Whether a trap arriving at `now` passes.
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < STORM_WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.passed = 0;
            }
        }
        if self.passed < STORM_TRAPS {
            self.passed += 1;
            true
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            false
        }
    }

    /// Once the window of a storm has ended: how many traps it dropped
    /// (then forgotten); `None` before, or when none were dropped.
    pub fn storm_over(&mut self, now: Instant) -> Option<u32> {
        let start = self.window_start?;
        if self.suppressed == 0 || now.saturating_duration_since(start) < STORM_WINDOW {
            return None;
        }
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Refusals of one device since its last log line.
#[derive(Debug, Default)]
struct RefusedLog {
    last: Option<Instant>,
    unlogged: u64,
}

/// Where received events go (the agent's sample sink).
pub trait TrapSink: Send + Sync {
    /// Takes one event of one device.
    fn push(&self, device: &str, event: Event);
}

impl<F: Fn(&str, Event) + Send + Sync> TrapSink for F {
    fn push(&self, device: &str, event: Event) {
        self(device, event)
    }
}

/// The SNMPv3 users the receiver decodes traps for (authNoPriv or
/// authPriv). Which device a trap may speak for is decided per trap
/// ([`authenticate`]); communities are checked there too, so that a wrong
/// one is counted rather than dropped unseen.
#[derive(Debug, Clone, Default)]
pub struct TrapCredentials {
    /// SNMPv3 users: name, auth, auth password, privacy, privacy password,
    /// with the inventory's protocol names.
    pub users: Vec<(String, String, String, String, String)>,
}

impl TrapCredentials {
    /// The SNMPv3 users of an inventory's devices.
    pub fn from_devices(devices: &[Device]) -> Self {
        let mut c = Self::default();
        for t in devices.iter().filter_map(|d| d.snmp.as_ref()) {
            if t.snmp_version() == Some(SnmpVersion::V3) {
                let u = (
                    t.user.clone(),
                    t.auth_protocol.clone(),
                    t.auth_password.clone(),
                    t.priv_protocol.clone(),
                    t.priv_password.clone(),
                );
                if !u.0.is_empty() && !c.users.iter().any(|x| x.0 == u.0) {
                    c.users.push(u);
                }
            }
        }
        c
    }
}

/// A bound trap receiver.
pub struct TrapReceiver {
    inner: NotificationReceiver,
    metrics: Metrics,
}

impl std::fmt::Debug for TrapReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrapReceiver")
            .field("local_addr", &self.inner.local_addr())
            .finish()
    }
}

fn auth_protocol(name: &str) -> Option<AuthProtocol> {
    Some(match name.to_ascii_lowercase().as_str() {
        "md5" => AuthProtocol::Md5,
        "sha" | "sha1" => AuthProtocol::Sha1,
        "sha224" => AuthProtocol::Sha224,
        "sha256" => AuthProtocol::Sha256,
        "sha384" => AuthProtocol::Sha384,
        "sha512" => AuthProtocol::Sha512,
        _ => return None,
    })
}

fn priv_protocol(name: &str) -> Option<PrivProtocol> {
    Some(match name.to_ascii_lowercase().as_str() {
        "des" => PrivProtocol::Des,
        "aes" | "aes128" => PrivProtocol::Aes128,
        "aes192" => PrivProtocol::Aes192Blumenthal,
        "aes256" => PrivProtocol::Aes256Blumenthal,
        _ => return None,
    })
}

impl TrapReceiver {
    /// Listens on `addr` (port 0 picks one; see [`Self::local_addr`]).
    pub async fn bind(addr: SocketAddr, creds: &TrapCredentials) -> Result<Self, ProbeError> {
        let bind_err = |e: Box<async_snmp::Error>| ProbeError::TrapBind {
            addr,
            source: std::io::Error::other(e.to_string()),
        };
        let engine_id = async_snmp::generate_engine_id().map_err(bind_err)?;
        // Traps are sent with the sender's engine as authoritative; this
        // engine only answers informs, so its state need not outlive us.
        let engine = AuthoritativeEngine::install(engine_id, |_| Ok::<(), Infallible>(()))
            .map_err(bind_err)?;
        let mut b = NotificationReceiver::builder()
            .bind(addr.to_string())
            .authoritative_engine(engine);
        for (user, auth, auth_pw, privacy, priv_pw) in &creds.users {
            let Some(a) = auth_protocol(auth) else {
                tracing::warn!(
                    user,
                    auth,
                    "trap user without a usable auth protocol ignored"
                );
                continue;
            };
            let p = priv_protocol(privacy);
            b = b
                .usm_user(user.as_bytes().to_vec(), |u| match p {
                    Some(p) => u.auth_priv(a, auth_pw.as_bytes(), p, priv_pw.as_bytes()),
                    None => u.auth(a, auth_pw.as_bytes()),
                })
                .map_err(|e| ProbeError::TrapBind {
                    addr,
                    source: std::io::Error::other(format!("SNMPv3 trap user {user:?}: {e}")),
                })?;
        }
        let inner = b
            // Every decoded trap reaches `run`, which checks it against its
            // source device's own credentials and counts the refusals.
            .acceptance_policy(|_| NotificationAcceptance::Accept)
            .build()
            .await
            .map_err(|e| ProbeError::TrapBind {
                addr,
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(Self {
            inner,
            metrics: Metrics::default(),
        })
    }

    /// Counts refused and suppressed traps in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    /// Turns traps into events until `cancel` fires. Traps from addresses
    /// the inventory does not know, or not authenticated as the device of
    /// their address, are dropped (the latter counted per device).
    pub async fn run<L>(self, lookup: L, sink: impl TrapSink, cancel: CancellationToken)
    where
        L: Fn(IpAddr) -> Option<TrapSource> + Send + Sync,
    {
        let mut storms: HashMap<String, StormLimit> = HashMap::new();
        let mut refused_log: HashMap<String, RefusedLog> = HashMap::new();
        let mut unknown_logged: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let now = Instant::now();
                    for (device, limit) in &mut storms {
                        if let Some(n) = limit.storm_over(now) {
                            tracing::warn!(device = %device, suppressed = n, "trap storm: traps dropped");
                            sink.push(device, storm_event(n));
                        }
                    }
                    storms.retain(|_, l| l.window_start.is_some_and(|s| now.saturating_duration_since(s) < STORM_WINDOW * 6));
                    continue;
                }
                r = self.inner.recv() => r,
            };
            let received = match received {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable or refused trap dropped");
                    continue;
                }
            };
            let from = received.source.ip();
            let Some(source) = lookup(from) else {
                if unknown_logged.is_none_or(|t| t.elapsed() >= REFUSED_LOG_EVERY) {
                    unknown_logged = Some(Instant::now());
                    tracing::warn!(%from, "trap from an address not in the inventory dropped");
                }
                continue;
            };
            let n = &received.notification;
            if let Err(why) = authenticate(n, source.snmp.as_ref()) {
                Metrics::of(&self.metrics.traps_refused, &source.device).inc();
                let log = refused_log.entry(source.device.clone()).or_default();
                log.unlogged += 1;
                if log.last.is_none_or(|t| t.elapsed() >= REFUSED_LOG_EVERY) {
                    tracing::warn!(device = %source.device, %from, reason = %why, refused = log.unlogged, "trap refused: not authenticated as the device of its address");
                    // Also an event of the device, so that `siaga device`
                    // shows it for devices that are not polled over SNMP.
                    sink.push(&source.device, refused_event(log.unlogged, why, from));
                    log.last = Some(Instant::now());
                    log.unlogged = 0;
                }
                continue;
            }
            if !storms
                .entry(source.device.clone())
                .or_default()
                .admit(Instant::now())
            {
                Metrics::of(&self.metrics.traps_suppressed, &source.device).inc();
                continue;
            }
            let Ok(trap_oid) = n.trap_oid() else {
                tracing::debug!(%from, "trap without snmpTrapOID dropped");
                continue;
            };
            if let Some(event) = event_of(&trap_oid, n.varbinds(), n.version(), from, &source) {
                tracing::info!(device = %source.device, kind = %event.kind, link = %event.link, if_index = event.if_index, "trap");
                sink.push(&source.device, event);
            }
        }
    }
}

/// The event that reports refused traps (at most one a minute per device).
fn refused_event(count: u64, why: TrapRefusal, from: IpAddr) -> Event {
    Event {
        kind: "traps_refused".into(),
        detail: format!("{count} trap(s) from {from} refused since the last report: {why}"),
        source: "trap".into(),
        ..Event::default()
    }
}

/// The event that sums up a trap storm.
fn storm_event(suppressed: u32) -> Event {
    Event {
        kind: "trap_storm".into(),
        detail: format!(
            "{suppressed} traps dropped: more than {STORM_TRAPS} in {} s",
            STORM_WINDOW.as_secs()
        ),
        source: "trap".into(),
        suppressed,
        ..Event::default()
    }
}

/// Binds `addr` and runs the receiver until `cancel` fires.
pub async fn run_trap_receiver<L>(
    addr: SocketAddr,
    creds: &TrapCredentials,
    lookup: L,
    sink: impl TrapSink,
    cancel: CancellationToken,
) -> Result<(), ProbeError>
where
    L: Fn(IpAddr) -> Option<TrapSource> + Send + Sync,
{
    let receiver = TrapReceiver::bind(addr, creds).await?;
    tracing::info!(addr = %receiver.local_addr(), "listening for SNMP traps");
    receiver.run(lookup, sink, cancel).await;
    Ok(())
}

/// The event a trap means, if it is one we act on. Pure: no socket and no
/// clock, so that the fuzz targets can feed it what the decoder made of
/// arbitrary bytes.
pub fn event_of(
    trap_oid: &Oid,
    varbinds: &[async_snmp::VarBind],
    version: Version,
    from: IpAddr,
    source: &TrapSource,
) -> Option<Event> {
    let arcs = trap_oid.arcs();
    let kind = if arcs == LINK_DOWN {
        "link_down"
    } else if arcs == LINK_UP {
        "link_up"
    } else if arcs == COLD_START || arcs == WARM_START {
        "device_rebooted"
    } else {
        tracing::debug!(%trap_oid, %from, "trap ignored");
        return None;
    };
    let if_entry = Oid::from_slice(IF_ENTRY);
    let ifx_entry = Oid::from_slice(IFX_ENTRY);
    // ifIndex.N = N, or the instance of any ifEntry column (ifAdminStatus.N, ...).
    let if_index = varbinds
        .iter()
        .find_map(|vb| {
            (vb.oid.starts_with(&if_entry) && vb.oid.len() == if_entry.len() + 2)
                .then(|| vb.oid.arcs().last().copied())
                .flatten()
        })
        .unwrap_or(0);
    let names: Vec<String> = varbinds
        .iter()
        .filter(|vb| {
            let a = vb.oid.arcs();
            (vb.oid.starts_with(&if_entry) && a.get(if_entry.len()) == Some(&2))
                || (vb.oid.starts_with(&ifx_entry) && a.get(ifx_entry.len()) == Some(&1))
        })
        // Interface names are DisplayStrings: cut like the poller's, and
        // a trap names one interface (ifDescr and ifName), not thousands.
        .filter_map(|vb| match &vb.value {
            Value::OctetString(b) => Some(crate::probe::snmp::cut_display_string(b).0),
            _ => None,
        })
        .take(TRAP_NAMES)
        .collect();
    let link = source
        .links
        .iter()
        .filter(|l| l.device == source.device)
        .find(|l| (l.if_index != 0 && l.if_index == if_index) || names.contains(&l.interface))
        .map(|l| l.name.clone())
        .unwrap_or_default();
    Some(Event {
        kind: kind.into(),
        link,
        if_index,
        detail: format!(
            "{trap_oid} ({version:?} trap from {from}{})",
            if names.is_empty() {
                String::new()
            } else {
                format!(", interface {}", names.join("/"))
            }
        ),
        source: "trap".into(),
        ..Event::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_snmp::VarBind;
    use test_case::test_case;

    fn v2c_trap(community: &str) -> Notification {
        Notification::TrapV2c {
            community: community.as_bytes().to_vec().into(),
            uptime: 1,
            trap_oid: Oid::from_slice(LINK_DOWN),
            varbinds: Vec::new(),
            request_id: 1,
            decode_anomalies: Vec::new(),
        }
    }

    fn v3_trap(user: &str, level: SecurityLevel) -> Notification {
        Notification::TrapV3 {
            username: user.as_bytes().to_vec().into(),
            context_engine_id: Vec::new().into(),
            context_name: Vec::new().into(),
            security_level: level,
            uptime: 1,
            trap_oid: Oid::from_slice(LINK_DOWN),
            varbinds: Vec::new(),
            request_id: 1,
            decode_anomalies: Vec::new(),
        }
    }

    fn v2c_device(community: &str) -> Option<SnmpTarget> {
        Some(SnmpTarget {
            version: "2c".into(),
            community: community.into(),
            ..SnmpTarget::default()
        })
    }

    fn v3_device(user: &str, privacy: &str) -> Option<SnmpTarget> {
        Some(SnmpTarget {
            version: "3".into(),
            user: user.into(),
            auth_protocol: "sha256".into(),
            auth_password: "authpass1".into(),
            priv_protocol: privacy.into(),
            priv_password: "privpass1".into(),
            ..SnmpTarget::default()
        })
    }

    #[test_case(v2c_trap("sw1-secret"), v2c_device("sw1-secret") => Ok(()) ; "own community")]
    #[test_case(v2c_trap("totally-wrong-community"), v2c_device("sw1-secret") => Err(TrapRefusal::WrongCommunity) ; "wrong community")]
    #[test_case(v2c_trap("sw2-secret"), v2c_device("sw1-secret") => Err(TrapRefusal::WrongCommunity) ; "another device's community")]
    #[test_case(v2c_trap(""), v2c_device("") => Err(TrapRefusal::WrongCommunity) ; "empty community configured accepts nothing")]
    #[test_case(v2c_trap("anything"), v3_device("admin", "aes") => Err(TrapRefusal::WrongVersion) ; "v2c trap for a v3-only device")]
    #[test_case(v2c_trap("public"), None => Err(TrapRefusal::NoCredentials) ; "device without SNMP credentials")]
    #[test_case(v3_trap("admin", SecurityLevel::AuthPriv), v3_device("admin", "aes") => Ok(()) ; "own v3 user authPriv")]
    #[test_case(v3_trap("admin", SecurityLevel::AuthNoPriv), v3_device("admin", "aes") => Err(TrapRefusal::SecurityTooLow) ; "no privacy where the device has it")]
    #[test_case(v3_trap("admin", SecurityLevel::AuthNoPriv), v3_device("admin", "none") => Ok(()) ; "authNoPriv for an auth-only device")]
    #[test_case(v3_trap("admin", SecurityLevel::NoAuthNoPriv), v3_device("admin", "none") => Err(TrapRefusal::SecurityTooLow) ; "unauthenticated v3")]
    #[test_case(v3_trap("other", SecurityLevel::AuthPriv), v3_device("admin", "aes") => Err(TrapRefusal::WrongUser) ; "another device's v3 user")]
    #[test_case(v3_trap("admin", SecurityLevel::AuthPriv), v2c_device("public") => Err(TrapRefusal::WrongVersion) ; "v3 trap for a v2c device")]
    fn a_trap_counts_only_with_its_devices_own_credentials(
        n: Notification,
        target: Option<SnmpTarget>,
    ) -> Result<(), TrapRefusal> {
        authenticate(&n, target.as_ref())
    }

    #[test]
    fn a_trap_with_huge_or_many_names_makes_a_bounded_event() {
        let source = TrapSource {
            device: "sw1".into(),
            ..TrapSource::default()
        };
        let vbs: Vec<VarBind> = (0..1000)
            .map(|i| {
                VarBind::new(
                    Oid::from_slice(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, i]),
                    Value::OctetString(vec![b'n'; 60_000].into()),
                )
            })
            .collect();
        let e = event_of(
            &Oid::from_slice(LINK_DOWN),
            &vbs,
            Version::V2c,
            "198.18.0.2".parse().expect("ip"),
            &source,
        )
        .expect("event");
        assert!(e.detail.len() < 2048, "{} bytes", e.detail.len());
    }

    #[test]
    fn a_storm_passes_the_limit_then_is_summed_up_once() {
        let t0 = Instant::now();
        let mut l = StormLimit::default();
        let passed = (0..1000).filter(|_| l.admit(t0)).count();
        assert_eq!(passed, STORM_TRAPS as usize);
        assert_eq!(
            l.storm_over(t0 + Duration::from_secs(1)),
            None,
            "window still open"
        );
        assert_eq!(l.storm_over(t0 + STORM_WINDOW), Some(1000 - STORM_TRAPS));
        assert_eq!(l.storm_over(t0 + STORM_WINDOW * 2), None, "summed up once");
        // A new window lets traps through again.
        assert!(l.admit(t0 + STORM_WINDOW));
        // A quiet device is never summed up.
        let mut quiet = StormLimit::default();
        assert!(quiet.admit(t0));
        assert_eq!(quiet.storm_over(t0 + STORM_WINDOW * 3), None);
    }

    #[test]
    fn link_down_names_the_inventory_link() {
        let source = TrapSource {
            device: "sw1".into(),
            links: vec![Link {
                device: "sw1".into(),
                interface: "port2".into(),
                if_index: 0,
                name: "uplink-dinkes".into(),
            }],
            snmp: None,
        };
        let vbs = vec![
            VarBind::new(
                Oid::from_slice(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 7]),
                Value::Integer(7),
            ),
            VarBind::new(
                Oid::from_slice(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 7]),
                Value::OctetString(b"port2".to_vec().into()),
            ),
        ];
        let e = event_of(
            &Oid::from_slice(LINK_DOWN),
            &vbs,
            Version::V2c,
            "198.18.0.2".parse().expect("ip"),
            &source,
        )
        .expect("event");
        assert_eq!(
            (
                e.kind.as_str(),
                e.link.as_str(),
                e.if_index,
                e.source.as_str()
            ),
            ("link_down", "uplink-dinkes", 7, "trap")
        );
        assert!(
            event_of(
                &Oid::from_slice(&[1, 3, 6, 1, 4, 1, 9]),
                &vbs,
                Version::V2c,
                "198.18.0.2".parse().expect("ip"),
                &source
            )
            .is_none()
        );
    }
}
