//! RabbitMQ-specific tests, one test binary with a file per theme: the broker closing the
//! connection or deleting the queue under a consumer, acks and early settling, bundles, and
//! configuration errors.
//!
//! Needs the broker at `SWITCHYARD_TEST_AMQP_URL` and `rabbitmqctl` on the PATH (the tests that
//! close connections from the broker skip with a message when it is missing).

mod acks;
mod bundles;
mod config;
mod connection_loss;
mod support;
mod tls;
