//! Siaga collector: ingest, store, health, tickets, the SOP chain and the admin API.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod health;
pub mod inventory;
pub mod notify;
pub mod pki;
pub mod revoke;
pub mod sop;
pub mod store;
pub mod ticket;
pub mod users;
