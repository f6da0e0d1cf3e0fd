//! Probes: how the agent measures devices (ICMP bursts, SNMP interface
//! health, SNMP traps, measurements on command).

pub mod check;
pub mod cycle;
pub mod discover;
pub mod health;
pub mod icmp;
pub mod measure;
pub mod snmp;
pub mod snmp_socket;
pub mod trap;
