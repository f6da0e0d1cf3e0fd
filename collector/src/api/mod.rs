//! The people's API: typed gRPC services, one per concern (`proto/siaga/v1/
//! *.proto`), each implemented in its concern's `api.rs`. Everything they
//! share lives here:
//!
//! - [`policy`]: the one table that says, per RPC, who may call it and how
//!   its answer is scoped to an OPD;
//! - [`gate`]: the one tower layer that enforces that table before any
//!   handler runs — it identifies the caller from the client certificate,
//!   refuses what the table refuses, limits each person's concurrent calls,
//!   writes every state-changing call to the API audit trail, and hands the
//!   handler a [`Caller`];
//! - [`ApiError`]: the one error type handlers return, with one mapping to
//!   gRPC codes;
//! - [`limits`] and [`page`]: field limits and keyset paging.

pub mod document;
pub mod error;
pub mod gate;
pub mod limits;
#[cfg(test)]
pub mod matrix;
pub mod page;
pub mod policy;
pub mod scope;
#[cfg(test)]
pub mod testing;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use error::ApiError;
pub use gate::{Caller, caller};
