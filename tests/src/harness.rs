//! Starting real collector, agent and CLI processes for end-to-end tests.
