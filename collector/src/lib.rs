//! Siaga collector: ingest, store, health, tickets, the SOP chain and the admin API.
#![forbid(unsafe_code)]

pub mod health;
pub mod sop;
