//! Tickets opened from incidents: numbering, records, the link to the SOP.

pub mod number;

pub use number::TicketNumber;
