//! Tickets opened from incidents: numbering, the durable records, the health
//! task that opens them, and the admin calls that show them.

pub mod api;
pub mod cli;
pub mod number;
pub mod service;
pub mod store;

pub use number::TicketNumber;
pub use service::{HealthCore, HealthHandle, Shared};
pub use store::{TicketHealth, TicketStore};
