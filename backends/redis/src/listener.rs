//! Cross-process wake-ups: a task on its own connection subscribes to the `{prefix}:wake`
//! channel that enqueue, retry and rescue scripts publish to, and turns each message into a
//! [`WakeHub`] notification. It reconnects by itself; workers poll as a backstop meanwhile.

use std::time::Duration;

use futures::StreamExt;
use switchyard_core::WakeHub;
use tokio::task::JoinHandle;

/// Stops the listener task when the last handle of a storage is dropped.
#[derive(Debug)]
pub(crate) struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the listener for `channel` on `client`.
pub(crate) fn spawn(client: redis::Client, channel: String, hub: WakeHub) -> Listener {
    Listener(tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if let Err(e) = pubsub.subscribe(&channel).await {
                        tracing::debug!(error = %e, "redis wake-up subscription failed");
                    } else {
                        backoff = Duration::from_millis(100);
                        // Something may have been published while we were away.
                        hub.notify();
                        let mut messages = pubsub.on_message();
                        while messages.next().await.is_some() {
                            hub.notify();
                        }
                        tracing::debug!("redis wake-up connection closed; reconnecting");
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis wake-up connection failed; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }))
}
