//! Who is calling: the identity in the TLS client certificate.

use tonic::{Request, Status};

use crate::pki::Identity;

/// The identity of the caller's certificate, or `unauthenticated`.
pub fn peer_identity<T>(req: &Request<T>) -> Result<Identity, Status> {
    let certs = req.peer_certs().ok_or_else(|| {
        Status::unauthenticated("a client certificate issued by this collector is required")
    })?;
    let leaf = certs.first().ok_or_else(|| {
        Status::unauthenticated("a client certificate issued by this collector is required")
    })?;
    Identity::from_der(leaf.as_ref()).map_err(|e| Status::unauthenticated(e.to_string()))
}
