//! The SOP disposition chain: the SOP file, the business calendar, the workflow and its records.
//!
//! The chain is data ([`file`] loads and validates `sop.toml` into a [`model::Sop`]);
//! [`workflow::Workflow`] moves a ticket along it, checking every action against the
//! caller's roles; [`escalation`] decides when a late step is told upward;
//! [`audit`] keeps the hash-chained event trail; [`card`] and [`register`] render
//! the documents that leave the system (Bahasa Indonesia by default), naming
//! people as [`people`] has them on record.
//!
//! Everything here is pure: time is passed in (`now`), nothing touches the disk
//! except [`file::load`].

pub mod api;
pub mod audit;
pub mod calendar;
pub mod card;
pub mod documents;
pub mod escalation;
pub mod file;
pub mod model;
pub mod number;
pub mod people;
pub mod register;
pub mod store;
pub mod workflow;

pub use audit::{AuditRecord, Tamper};
pub use calendar::{Calendar, CalendarConfig};
pub use file::SopFileError;
pub use model::{Lang, Sop, SopVersion, Step, TimeStandard, WorkDuration};
pub use number::TicketNumber;
pub use people::{People, Person};
pub use workflow::{Action, Actor, Event, EventKind, Origin, TicketSop, Workflow, WorkflowError};
