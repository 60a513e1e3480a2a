//! Cross-process wake-ups: a task on its own connection subscribes to a Pub/Sub channel
//! (`{prefix}:wake`, which the storage's enqueue, retry and rescue scripts publish to, or
//! `{prefix}:mq:wake` for the queue) and turns each message into [`WakeHub`] notifications.
//! It reconnects by itself; receivers poll as a backstop meanwhile.

use std::time::Duration;

use futures::StreamExt;
use switchyard_core::WakeHub;
use tokio::task::JoinHandle;

/// Stops the listener task when the last handle of a storage or queue is dropped.
#[derive(Debug)]
pub(crate) struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts a listener for `channel` on `client` that notifies `hub` on every message.
pub(crate) fn spawn(client: redis::Client, channel: String, hub: WakeHub) -> Listener {
    let on_connect = hub.clone();
    spawn_with(
        client,
        channel,
        move |_payload| hub.notify(),
        move || on_connect.notify(),
    )
}

/// Starts a listener for `channel` on `client`: `on_message` gets each message's payload,
/// `on_connect` runs after every (re)subscription, since something may have been published
/// while the listener was away.
pub(crate) fn spawn_with<M, C>(
    client: redis::Client,
    channel: String,
    on_message: M,
    on_connect: C,
) -> Listener
where
    M: Fn(&str) + Send + 'static,
    C: Fn() + Send + 'static,
{
    Listener(tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if let Err(e) = pubsub.subscribe(&channel).await {
                        tracing::debug!(error = %e, "redis wake-up subscription failed");
                    } else {
                        backoff = Duration::from_millis(100);
                        on_connect();
                        let mut messages = pubsub.on_message();
                        while let Some(msg) = messages.next().await {
                            let payload: String = msg.get_payload().unwrap_or_default();
                            on_message(&payload);
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
