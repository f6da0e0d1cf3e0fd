//! Who is calling: the identity in the TLS client certificate.

use tonic::{Request, Status};

use crate::pki::Identity;
use crate::revoke::RevocationList;

/// The identity of the caller's certificate, or `unauthenticated` (also for a
/// revoked certificate: TLS accepted it, the revocation list does not).
pub fn peer_identity<T>(req: &Request<T>, revoked: &RevocationList) -> Result<Identity, Status> {
    let certs = req.peer_certs().ok_or_else(|| {
        Status::unauthenticated("a client certificate issued by this collector is required")
    })?;
    let leaf = certs.first().ok_or_else(|| {
        Status::unauthenticated("a client certificate issued by this collector is required")
    })?;
    let identity =
        Identity::from_der(leaf.as_ref()).map_err(|e| Status::unauthenticated(e.to_string()))?;
    if let Err(why) = revoked.check(leaf.as_ref()) {
        tracing::warn!(%identity, reason = %why, "revoked certificate refused");
        return Err(Status::unauthenticated(why));
    }
    Ok(identity)
}
