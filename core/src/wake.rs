//! Wake-ups: a coalescing signal from a backend to its idle workers that new work may be
//! runnable. A wake-up is a hint; workers always poll as a backstop.

use std::time::Duration;

use tokio::sync::watch;

/// The sending side, owned by a backend. `notify` marks the signal for every subscriber; many
/// notifications before a subscriber looks collapse into one.
#[derive(Debug, Clone)]
pub struct WakeHub {
    tx: watch::Sender<()>,
}

impl Default for WakeHub {
    fn default() -> Self {
        Self::new()
    }
}

impl WakeHub {
    /// A hub with no subscribers.
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(());
        Self { tx }
    }

    /// Tells every subscriber that work may be runnable.
    pub fn notify(&self) {
        self.tx.send_replace(());
    }

    /// A new subscriber. It sees notifications sent after this call.
    pub fn subscribe(&self) -> WakeSubscription {
        WakeSubscription {
            rx: Some(self.tx.subscribe()),
        }
    }
}

/// The receiving side, held by one worker's fetcher.
#[derive(Debug)]
pub struct WakeSubscription {
    rx: Option<watch::Receiver<()>>,
}

impl WakeSubscription {
    /// A subscription that never fires: the worker relies on polling alone.
    pub fn polling_only() -> Self {
        Self { rx: None }
    }

    /// Waits for a notification sent since the last wait, or for `timeout`. Returns whether a
    /// notification arrived.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        match &mut self.rx {
            Some(rx) => match tokio::time::timeout(timeout, rx.changed()).await {
                Ok(Ok(())) => true,
                Ok(Err(_closed)) => {
                    // The backend is gone: fall back to polling instead of spinning.
                    self.rx = None;
                    tokio::time::sleep(timeout).await;
                    false
                }
                Err(_elapsed) => false,
            },
            None => {
                tokio::time::sleep(timeout).await;
                false
            }
        }
    }
}
