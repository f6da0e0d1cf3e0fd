//! Probes: how the agent measures devices.

pub mod icmp;
