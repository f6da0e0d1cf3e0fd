//! Siaga wire protocol `siaga.v1`, generated from `proto/siaga/v1/*.proto`.
#![forbid(unsafe_code)]

/// Generated types and services of package `siaga.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("siaga.v1");
}

/// Major protocol version: changes only on a breaking change.
pub const PROTOCOL_MAJOR: u32 = 1;
/// Minor protocol version: grows with every compatible addition.
pub const PROTOCOL_MINOR: u32 = 0;

/// Largest gRPC message either side accepts (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Whether a peer speaking `major` can talk to us.
pub fn compatible(major: u32) -> bool {
    major == PROTOCOL_MAJOR
}
