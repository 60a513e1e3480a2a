//! Queue-level conformance cases (publish, receive, ack, nack, extend) for external queues.
