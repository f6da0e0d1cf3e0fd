//! Siaga agent: probes an OPD's devices and streams what it sees to the collector.
// `deny`, not `forbid`: `memory` calls two allocator functions of libc.
#![deny(unsafe_code)]

pub mod backoff;
pub mod clock;
pub mod config;
pub mod error;
pub mod fit;
pub mod host;
pub mod identity;
pub mod logs;
pub mod memory;
pub mod metrics;
pub mod probe;
pub mod scheduler;
pub mod spool;
pub mod uplink;
