//! Siaga wire protocol `siaga.v1`, generated from `proto/siaga/v1/*.proto`.
#![forbid(unsafe_code)]

/// Generated types and services of package `siaga.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("siaga.v1");
    include!(concat!(env!("OUT_DIR"), "/siaga.v1.serde.rs"));
}

pub mod codec;
pub mod dial;
pub mod tls;
pub mod words;

// What both the collector and the people's CLI need of the wire beyond the
// messages (the agent does without: feature `client`).
#[cfg(feature = "client")]
pub mod cert;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod config;
#[cfg(feature = "client")]
pub mod document;
#[cfg(feature = "client")]
pub mod time;
#[cfg(feature = "client")]
pub mod usage;
#[cfg(feature = "client")]
pub mod zone;

/// The encoded `FileDescriptorSet` of every .proto file (for reflection
/// and for tests that enumerate the RPCs).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/siaga_descriptor.bin"));

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

/// Largest encoded [`v1::Sample`] either side handles (4 MiB, a quarter of
/// the message cap): an agent cuts a larger one before spooling it, the
/// collector refuses a larger one (counted) and takes the rest of its batch.
/// 4,096 interfaces with every string at its 255-octet MIB size fit.
pub const MAX_SAMPLE_BYTES: usize = 4 * 1024 * 1024;

/// Echo requests per device and cycle at most: the collector's inventory
/// refuses a larger `icmp_count` (naming file, line and key) and an agent
/// caps what it is sent at this, whatever its collector says.
pub const MAX_ICMP_COUNT: u32 = 100;

/// Metadata key of an `unauthenticated` status that says why the caller's
/// certificate was refused (see [`REFUSAL_REVOKED`]).
pub const REFUSAL_KEY: &str = "siaga-refusal";
/// [`REFUSAL_KEY`]'s value for a revoked certificate.
pub const REFUSAL_REVOKED: &str = "revoked";
/// Metadata key of the refused certificate's serial (hex).
pub const SERIAL_KEY: &str = "siaga-serial";

/// The shortest password `SetPassword` accepts (the CLI says so before
/// sending one).
pub const MIN_PASSWORD: usize = 10;
