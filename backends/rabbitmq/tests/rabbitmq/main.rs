//! RabbitMQ-specific tests, one test binary with a file per theme: the broker closing the
//! connection or deleting the queue under a consumer, a frozen worker process, acks and early
//! settling, bundles, and configuration errors.
//!
//! Needs the broker at `SWITCHYARD_TEST_AMQP_URL` and `rabbitmqctl` on the PATH (the tests that
//! close connections from the broker skip with a message when it is missing); the frozen-worker
//! tests also need PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`), which their two processes share,
//! and `kill` on the PATH.

mod acks;
mod bundles;
mod config;
mod connection_loss;
mod frozen_worker;
mod support;
mod tls;
