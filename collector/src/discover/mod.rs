//! Discovery: the OPD's agent sweeps a subnet and reads what answers over
//! SNMP and LLDP ([`service`]); the collector turns it into a proposal
//! against the inventory in force ([`proposal`]), never a change; a person
//! writes the reviewed proposal with `siaga-collector inventory apply`
//! ([`apply`]).

pub mod api;
pub mod apply;
pub mod proposal;
pub mod service;
pub mod vendor;

pub use service::{DiscoverError, DiscoverService};
