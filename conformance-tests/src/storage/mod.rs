//! The storage conformance cases, one `pub async fn` per behaviour of SPEC §3, by area. Each
//! takes a fresh [`Backend`](crate::Backend) and panics with a message that says what broke.
//!
//! Each area file ends with the list of its cases (`storage_<area>_cases!`), and
//! [`storage_cases!`](crate::storage_cases) joins the lists for
//! [`conformance_suite!`](crate::conformance_suite): a new case is its function plus its name
//! in the list below it, in one file.

pub mod admin;
pub mod cancel;
pub mod delivery;
pub mod enqueue;
pub mod failures;
pub mod flow;
pub mod leases;
pub mod outbox;
pub mod schedules;
pub mod shutdown;
mod support;
pub mod workflows;

pub use self::admin::*;
pub use self::cancel::*;
pub use self::delivery::*;
pub use self::enqueue::*;
pub use self::failures::*;
pub use self::flow::*;
pub use self::leases::*;
pub use self::outbox::*;
pub use self::schedules::*;
pub use self::shutdown::*;
pub use self::workflows::*;

/// Every storage case: calls `$then!` with `$args` followed by one area's case names, once per
/// area. A new area file is added here and in the check below.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::storage_enqueue_cases! { $then!($($args)*) }
        $crate::storage_delivery_cases! { $then!($($args)*) }
        $crate::storage_lease_cases! { $then!($($args)*) }
        $crate::storage_failure_cases! { $then!($($args)*) }
        $crate::storage_cancel_cases! { $then!($($args)*) }
        $crate::storage_admin_cases! { $then!($($args)*) }
        $crate::storage_outbox_cases! { $then!($($args)*) }
        $crate::storage_shutdown_cases! { $then!($($args)*) }
        $crate::storage_schedule_cases! { $then!($($args)*) }
        $crate::storage_workflow_cases! { $then!($($args)*) }
        $crate::storage_flow_cases! { $then!($($args)*) }
    };
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` of an area file is in that file's list, so none compiles without
    /// running (a name in a list without its function does not compile).
    #[test]
    fn every_case_is_listed() {
        crate::storage_enqueue_cases! { case_names!(const ENQUEUE;) }
        crate::storage_delivery_cases! { case_names!(const DELIVERY;) }
        crate::storage_lease_cases! { case_names!(const LEASES;) }
        crate::storage_failure_cases! { case_names!(const FAILURES;) }
        crate::storage_cancel_cases! { case_names!(const CANCEL;) }
        crate::storage_admin_cases! { case_names!(const ADMIN;) }
        crate::storage_outbox_cases! { case_names!(const OUTBOX;) }
        crate::storage_shutdown_cases! { case_names!(const SHUTDOWN;) }
        crate::storage_schedule_cases! { case_names!(const SCHEDULES;) }
        crate::storage_workflow_cases! { case_names!(const WORKFLOWS;) }
        crate::storage_flow_cases! { case_names!(const FLOW;) }
        crate::support::check_lists(
            "src/storage",
            &[
                ("enqueue.rs", include_str!("enqueue.rs"), ENQUEUE),
                ("delivery.rs", include_str!("delivery.rs"), DELIVERY),
                ("leases.rs", include_str!("leases.rs"), LEASES),
                ("failures.rs", include_str!("failures.rs"), FAILURES),
                ("cancel.rs", include_str!("cancel.rs"), CANCEL),
                ("admin.rs", include_str!("admin.rs"), ADMIN),
                ("outbox.rs", include_str!("outbox.rs"), OUTBOX),
                ("shutdown.rs", include_str!("shutdown.rs"), SHUTDOWN),
                ("schedules.rs", include_str!("schedules.rs"), SCHEDULES),
                ("workflows.rs", include_str!("workflows.rs"), WORKFLOWS),
                ("flow.rs", include_str!("flow.rs"), FLOW),
            ],
        );
    }
}
