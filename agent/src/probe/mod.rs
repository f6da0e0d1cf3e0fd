//! Probes: how the agent measures devices (ICMP bursts, SNMP interface
//! health, SNMP traps).

pub mod check;
pub mod cycle;
pub mod icmp;
pub mod snmp;
pub mod trap;
