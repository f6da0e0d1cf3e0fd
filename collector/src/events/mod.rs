//! The event log as people see it: the `Events` service.

pub mod api;
