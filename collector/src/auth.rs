//! Who is calling: the identity in the TLS client certificate.
//!
//! The certificate is parsed once per connection: tonic hands every request
//! of one connection the same `Arc` of peer certificates, so what was read
//! from it is kept against that `Arc` (a `Weak` keeps the allocation, and so
//! the key, from being reused while the entry lives). The revocation check
//! runs on every request, against the serial read once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tonic::transport::CertificateDer;
use tonic::{Request, Status};

use crate::hub::Hub;
use crate::pki::Identity;

/// What the collector takes from a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Who it speaks for.
    pub identity: Identity,
    /// Its serial (canonical hex, as in the revocation list).
    pub serial: String,
    /// Its notAfter, microseconds since the epoch.
    pub not_after_us: i64,
}

impl Peer {
    /// Reads a DER client certificate.
    pub fn from_der(der: &[u8]) -> Result<Peer, String> {
        let identity = Identity::from_der(der).map_err(|e| e.to_string())?;
        let serial = crate::revoke::serial_of(der)?;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("unreadable client certificate: {e}"))?;
        let not_after_us = cert
            .validity()
            .not_after
            .timestamp()
            .saturating_mul(1_000_000);
        Ok(Peer {
            identity,
            serial,
            not_after_us,
        })
    }
}

/// The peer certificates of one connection, as tonic gives them.
pub type Certs = Vec<CertificateDer<'static>>;
/// What one connection's certificate gave: the peer, or why it is refused.
type Reading = Result<Arc<Peer>, String>;

/// Entries beyond which closed connections are swept out.
const SWEEP_AT: usize = 1024;

/// Certificates already read, per connection.
#[derive(Debug, Default)]
pub struct PeerCache {
    map: Mutex<HashMap<usize, (Weak<Certs>, Reading)>>,
}

impl PeerCache {
    fn get(&self, certs: &Arc<Certs>) -> Reading {
        let key = Arc::as_ptr(certs) as usize;
        // Only a cache: whatever a panic left in it is still a valid entry.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((weak, peer)) = map.get(&key)
            && weak.upgrade().is_some_and(|c| Arc::ptr_eq(&c, certs))
        {
            return peer.clone();
        }
        if map.len() >= SWEEP_AT {
            map.retain(|_, (w, _)| w.strong_count() > 0);
        }
        let peer = certs
            .first()
            .ok_or_else(|| "a client certificate issued by this collector is required".to_string())
            .and_then(|leaf| Peer::from_der(leaf.as_ref()))
            .map(Arc::new);
        map.insert(key, (Arc::downgrade(certs), peer.clone()));
        peer
    }

    /// Connections with an entry (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no connection has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The caller's certificate, or `unauthenticated` (also for a revoked
/// certificate: TLS accepted it, the revocation list does not).
pub fn peer<T>(req: &Request<T>, hub: &Hub) -> Result<Arc<Peer>, Status> {
    peer_of(req.peer_certs(), hub)
}

/// [`peer`] of a connection's certificates (what TLS gave, if anything).
pub fn peer_of(certs: Option<Arc<Certs>>, hub: &Hub) -> Result<Arc<Peer>, Status> {
    let certs = certs.ok_or_else(|| {
        Status::unauthenticated("a client certificate issued by this collector is required")
    })?;
    let peer = hub.peers.get(&certs).map_err(Status::unauthenticated)?;
    if hub.revoked.is_revoked(&peer.serial) {
        tracing::warn!(identity = %peer.identity, serial = %peer.serial, "revoked certificate refused");
        return Err(Status::unauthenticated(format!(
            "certificate {} ({}) has been revoked",
            peer.serial, peer.identity
        )));
    }
    Ok(peer)
}

/// The identity of the caller's certificate (see [`peer`]).
pub fn peer_identity<T>(req: &Request<T>, hub: &Hub) -> Result<Identity, Status> {
    peer(req, hub).map(|p| p.identity.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pki::Ca;

    #[test]
    fn a_certificate_is_read_once_per_connection() {
        let (ca, _) = Ca::generate("t").unwrap();
        let id = Identity::Agent {
            opd: "a".into(),
            id: "a-agent".into(),
        };
        let (pem, _) = ca.client_cert(&id, 30).unwrap();
        let der = crate::revoke::pem_to_der(&pem).unwrap();
        let cache = PeerCache::default();
        let conn: Arc<Certs> = Arc::new(vec![CertificateDer::from(der.clone())]);
        let p1 = cache.get(&conn).unwrap();
        let p2 = cache.get(&conn.clone()).unwrap();
        assert!(
            Arc::ptr_eq(&p1, &p2),
            "the second request reuses the first's reading"
        );
        assert_eq!(p1.identity, id);
        let days = (p1.not_after_us / 1_000_000 - chrono::Utc::now().timestamp()) / 86_400;
        assert!((29..=30).contains(&days), "{days}");
        // Another connection with the same certificate is read again.
        let other: Arc<Certs> = Arc::new(vec![CertificateDer::from(der)]);
        assert!(!Arc::ptr_eq(&p1, &cache.get(&other).unwrap()));
        // No certificate, or garbage, is refused (and remembered as refused).
        let empty: Arc<Certs> = Arc::new(vec![]);
        assert!(cache.get(&empty).is_err());
        let junk: Arc<Certs> = Arc::new(vec![CertificateDer::from(b"junk".to_vec())]);
        assert!(cache.get(&junk).is_err());
        // Closed connections are swept.
        drop((conn, other, empty, junk));
        for _ in 0..SWEEP_AT {
            let c: Arc<Certs> = Arc::new(vec![]);
            let _ = cache.get(&c);
        }
        assert!(cache.len() <= SWEEP_AT, "{}", cache.len());
    }
}
