//! The `Devices` service: devices, links and agents with their state.

/// The `Devices` gRPC service (devices.proto).
#[derive(Debug, Clone)]
pub struct DevicesApi {
    hub: std::sync::Arc<crate::hub::Hub>,
}

impl DevicesApi {
    /// The service on `hub`.
    pub fn new(hub: std::sync::Arc<crate::hub::Hub>) -> Self {
        Self { hub }
    }

    /// The collector's shared state.
    pub fn hub(&self) -> &crate::hub::Hub {
        &self.hub
    }
}

#[tonic::async_trait]
impl siaga_proto::v1::devices_server::Devices for DevicesApi {}
