//! SNMP trap receiver: linkDown/linkUp (v1, v2c, v3) turned into events the
//! moment they arrive, so a link fault is known within a second instead of
//! a poll interval.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use async_snmp::notification::NotificationReceiver;
use async_snmp::{
    AuthProtocol, AuthoritativeEngine, NotificationAcceptance, Oid, PrivProtocol, SecurityLevel,
    Value, Version,
};
use siaga_proto::v1::{Device, Event, Link};
use tokio_util::sync::CancellationToken;

use crate::error::ProbeError;

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

/// Who may send traps: communities (v1/v2c) and SNMPv3 users.
#[derive(Debug, Clone, Default)]
pub struct TrapCredentials {
    /// Accepted communities; empty accepts any (cleartext anyway).
    pub communities: Vec<String>,
    /// SNMPv3 users (authNoPriv or authPriv): name, auth, auth password,
    /// privacy, privacy password, with the inventory's protocol names.
    pub users: Vec<(String, String, String, String, String)>,
}

impl TrapCredentials {
    /// The credentials of an inventory's devices: their communities and v3 users.
    pub fn from_devices(devices: &[Device]) -> Self {
        let mut c = Self::default();
        for t in devices.iter().filter_map(|d| d.snmp.as_ref()) {
            if t.version == "3" {
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
            } else if !t.community.is_empty() && !c.communities.contains(&t.community) {
                c.communities.push(t.community.clone());
            }
        }
        c
    }
}

/// A bound trap receiver.
pub struct TrapReceiver {
    inner: NotificationReceiver,
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
            .authoritative_engine(engine)
            .communities(creds.communities.iter().map(|c| c.as_bytes().to_vec()));
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
            .acceptance_policy(|n| match n.security_level {
                // v1/v2c: the community allowlist already matched.
                None => NotificationAcceptance::Accept,
                Some(l) if l >= SecurityLevel::AuthNoPriv => NotificationAcceptance::Accept,
                Some(_) => NotificationAcceptance::Reject,
            })
            .build()
            .await
            .map_err(|e| ProbeError::TrapBind {
                addr,
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(Self { inner })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    /// Turns traps into events until `cancel` fires. Traps from addresses
    /// the inventory does not know are logged and dropped.
    pub async fn run<L>(self, lookup: L, sink: impl TrapSink, cancel: CancellationToken)
    where
        L: Fn(IpAddr) -> Option<TrapSource> + Send + Sync,
    {
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return,
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
                tracing::warn!(%from, "trap from an address not in the inventory dropped");
                continue;
            };
            let n = &received.notification;
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

/// The event a trap means, if it is one we act on.
fn event_of(
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
        .filter_map(|vb| match &vb.value {
            Value::OctetString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_snmp::VarBind;

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
