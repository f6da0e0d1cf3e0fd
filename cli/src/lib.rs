//! `siaga`, the CLI for people: each command asks one typed service of the
//! collector's admin API (through `siaga-proto` only) and prints its answer.
#![forbid(unsafe_code)]

pub mod availability;
pub mod client;
pub mod devices;
pub mod discover;
pub mod events;
pub mod measure;
pub mod report;
pub mod sop;
pub mod ticket;
pub mod usage;
pub mod view;
pub mod when;
