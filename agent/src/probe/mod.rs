//! Probes: how the agent measures devices (ICMP bursts, SNMP interface
//! health, SNMP traps).

pub mod icmp;
