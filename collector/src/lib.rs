//! Siaga collector: ingest, store, health, tickets, the SOP chain and the admin API.
#![forbid(unsafe_code)]

pub mod admin;
pub mod anchor;
pub mod api;
pub mod auth;
pub mod backup;
pub mod config;
pub mod devices;
pub mod error;
pub mod events;
pub mod health;
pub mod hub;
pub mod ingest;
pub mod inventory;
pub mod ledger;
pub mod listen;
pub mod logs;
pub mod measure;
pub mod metrics;
pub mod notify;
pub mod pki;
pub mod report;
pub mod revoke;
pub mod role;
pub mod rollup;
pub mod safe_file;
pub mod schema;
pub mod server;
pub mod sop;
pub mod state;
pub mod store;
pub mod systemd;
pub mod ticket;
pub mod usage;
pub mod users;
pub mod web;
