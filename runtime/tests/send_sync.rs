//! Public types can cross threads and be shared: the runtime holds them in `Arc`s and tasks.

fn send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<switchyard::Switchyard>();
    send_sync::<switchyard::Client>();
    send_sync::<switchyard::Registry>();
    send_sync::<switchyard::Config>();
    send_sync::<switchyard::Worker>();
    send_sync::<switchyard::WorkerHandle>();
    send_sync::<switchyard::Shutdown>();
    send_sync::<switchyard::Error>();
    send_sync::<switchyard::JobRecord>();
    send_sync::<switchyard::NewJob>();
    send_sync::<switchyard::JobContext>();
    send_sync::<switchyard::StateMap>();
    send_sync::<switchyard::TestClock>();
    send_sync::<switchyard::testing::Harness>();
    send_sync::<switchyard::testing::Attempt>();
    send_sync::<std::sync::Arc<dyn switchyard::Storage>>();
    send_sync::<std::sync::Arc<dyn switchyard::Queue>>();
    send_sync::<std::sync::Arc<dyn switchyard::Executor>>();
}
