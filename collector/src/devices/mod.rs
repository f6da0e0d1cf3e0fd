//! Devices, links and agents as people see them: the `Devices` service.

pub mod api;
