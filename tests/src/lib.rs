//! Siaga's test lab: real collector and agent processes, and OPD networks
//! built from network namespaces.

pub mod ber;
pub mod harness;
pub mod lab;
pub mod office;
pub mod postgres;
pub mod prometheus;
pub mod province;
pub mod sinks;
pub mod web;
