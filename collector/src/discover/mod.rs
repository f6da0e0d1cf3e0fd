//! Discovery: the OPD's agent sweeps a subnet and reads what answers over
//! SNMP and LLDP; the collector routes the command and collects the parts
//! ([`service`]).

pub mod service;

pub use service::{DiscoverError, DiscoverService};
