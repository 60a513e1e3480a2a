//! The contract of the [`Queue`](switchyard_core::Queue) trait alone (no storage, no worker),
//! for broker adapters such as SQS and RabbitMQ. Each case takes a fresh queue adapter from the
//! adapter's own factory, isolated by a random queue-name prefix, and uses queue names of its
//! own, so cases run in parallel against one broker.
//!
//! ```ignore
//! async fn queue() -> std::sync::Arc<dyn switchyard_core::Queue> {
//!     let prefix = switchyard_conformance::random_prefix();
//!     std::sync::Arc::new(MyQueue::connect(MyConfig::new(URL).with_prefix(prefix)).await.unwrap())
//! }
//! switchyard_conformance::queue_conformance_suite!(queue);
//! ```
//!
//! Timing cases use leases and delays of one to three seconds; brokers that round to whole
//! seconds (SQS) pass them. A case that needs a capability the adapter does not declare
//! (`max_lease: None`: no visibility timeout; `max_native_delay: None`) prints why and returns.
//!
//! Each area file ends with the list of its cases (`queue_<area>_cases!`), and
//! [`queue_cases!`](crate::queue_cases) joins the lists for
//! [`queue_conformance_suite!`](crate::queue_conformance_suite).

pub mod bundles;
pub mod delivery;
mod support;

pub use self::bundles::*;
pub use self::delivery::*;

/// Every queue case: calls `$then!` with `$args` followed by one area's case names, once per
/// area. A new area file is added here and in the check below.
#[doc(hidden)]
#[macro_export]
macro_rules! queue_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::queue_delivery_cases! { $then!($($args)*) }
        $crate::queue_bundle_cases! { $then!($($args)*) }
    };
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` of an area file is in that file's list.
    #[test]
    fn every_case_is_listed() {
        crate::queue_delivery_cases! { case_names!(const DELIVERY;) }
        crate::queue_bundle_cases! { case_names!(const BUNDLES;) }
        crate::support::check_lists(
            "src/queue",
            &[
                ("delivery.rs", include_str!("delivery.rs"), DELIVERY),
                ("bundles.rs", include_str!("bundles.rs"), BUNDLES),
            ],
        );
    }
}
