//! The `Events` service: the event log, paged and followed.

/// The `Events` gRPC service (events.proto).
#[derive(Debug, Clone)]
pub struct EventsApi {
    hub: std::sync::Arc<crate::hub::Hub>,
}

impl EventsApi {
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
impl siaga_proto::v1::events_server::Events for EventsApi {}
