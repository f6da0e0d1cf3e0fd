//! Measurements on command: an extended ICMP burst and a short SNMP window
//! the OPD's agent takes of a ticket's devices and links before and after the
//! technician's work (or of any device, outside a ticket). The records live
//! beside the tickets; the closing report reads them.

pub mod api;
pub mod model;
pub mod service;
pub mod store;
pub mod wire;

pub use model::{DeviceFigures, LinkFigures, MeasureState, Measurement, Phase};
pub use service::{MeasureError, MeasureService};
pub use store::MeasureStore;
