//! The SDK client and the queue-URL cache: building the client (region, endpoint, TLS,
//! timeouts, emulator credentials), and looking up (or creating) the SQS queue of each
//! Switchyard queue once.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;
use switchyard_core::{Error, ErrorKind, Result};

use crate::config::SqsConfig;
use crate::error::sdk_error;
use crate::limits::MAX_WAIT;

/// What every SQS call needs: the client, the settings and the URLs of the queues in use.
/// One per [`SqsQueue`](crate::SqsQueue), shared by its clones.
pub(crate) struct Connection {
    pub(crate) client: Client,
    pub(crate) config: SqsConfig,
    /// SQS queue URLs by Switchyard queue.
    urls: RwLock<HashMap<String, String>>,
}

impl Connection {
    /// Builds the SQS client: the region from the config or the environment, the endpoint
    /// override if any, rustls over ring for HTTPS (the system's CA certificates, plus
    /// `tls_ca_file`'s). Credentials come from the AWS default chain
    /// (environment, profile, web identity, ECS, instance metadata) — except that with an
    /// endpoint override and no `AWS_ACCESS_KEY_ID` in the environment, static dummy
    /// credentials are used (emulators accept any). Makes no request.
    pub(crate) async fn open(config: SqsConfig) -> Result<Self> {
        use aws_config::{BehaviorVersion, Region};
        use aws_smithy_http_client::tls;

        let mut http = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ));
        if let Some(pem) = config.ca_pem()? {
            let trust = tls::TrustStore::default().with_pem_certificate(pem);
            let context = tls::TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .map_err(|e| {
                    Error::config("key `sqs.tls_ca_file`: the CA file cannot be used")
                        .with_source(e)
                })?;
            http = http.tls_context(context);
        }
        let http = http.build_https();
        // A stalled connection must not hang a worker's fetch loop: every attempt ends after
        // the longest long poll plus a margin.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(MAX_WAIT + Duration::from_secs(10))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.resolved_region()))
            .timeout_config(timeouts)
            .http_client(http);
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint);
            let env_keys = std::env::var("AWS_ACCESS_KEY_ID").is_ok_and(|v| !v.is_empty());
            if !env_keys {
                loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                    "switchyard",
                    "switchyard",
                    None,
                    None,
                    "switchyard-emulator",
                ));
            }
        }
        let shared = loader.load().await;
        Ok(Self {
            client: Client::new(&shared),
            config,
            urls: RwLock::new(HashMap::new()),
        })
    }

    /// The SQS queue URL of a Switchyard queue, creating the SQS queue if it does not exist.
    pub(crate) async fn queue_url(&self, queue: &str) -> Result<String> {
        if let Some(url) = self.urls.read().expect("poisoned").get(queue) {
            return Ok(url.clone());
        }
        let name = self.config.queue_name(queue);
        let url = match self.client.get_queue_url().queue_name(&name).send().await {
            Ok(out) => out.queue_url.unwrap_or_default(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                self.create(&name).await?
            }
            Err(e) => return Err(sdk_error("GetQueueUrl", e)),
        };
        if url.is_empty() {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("SQS returned no URL for queue `{name}`"),
            ));
        }
        self.urls
            .write()
            .expect("poisoned")
            .insert(queue.to_string(), url.clone());
        Ok(url)
    }

    /// The SQS queue name and URL of a Switchyard queue if its SQS queue exists (`None` when it
    /// does not). Never creates it, and caches nothing.
    pub(crate) async fn existing_url(&self, queue: &str) -> Result<(String, Option<String>)> {
        let name = self.config.queue_name(queue);
        match self.client.get_queue_url().queue_name(&name).send().await {
            Ok(out) => Ok((name, out.queue_url)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                Ok((name, None))
            }
            Err(e) => Err(sdk_error("GetQueueUrl", e)),
        }
    }

    /// `e`, after forgetting the cached `url` when `e` says its queue does not exist (deleted
    /// since it was looked up): the next call looks the queue up again, creating it.
    pub(crate) fn forget_if_missing(&self, url: &str, e: Error) -> Error {
        if e.kind() == ErrorKind::NotFound {
            tracing::warn!(
                url,
                "SQS queue no longer exists; it is created again on the next call"
            );
            self.urls.write().expect("poisoned").retain(|_, u| u != url);
        }
        e
    }

    /// The cached URLs: every queue this handle used, by Switchyard queue.
    pub(crate) fn cached_urls(&self) -> Vec<(String, String)> {
        self.urls
            .read()
            .expect("poisoned")
            .iter()
            .map(|(q, url)| (q.clone(), url.clone()))
            .collect()
    }

    /// Forgets the URL of `queue` (its SQS queue was deleted).
    pub(crate) fn forget(&self, queue: &str) {
        self.urls.write().expect("poisoned").remove(queue);
    }

    async fn create(&self, name: &str) -> Result<String> {
        let retention = self
            .config
            .retention
            .clamp(Duration::from_secs(60), Duration::from_secs(14 * 24 * 3600));
        let mut req = self.client.create_queue().queue_name(name).attributes(
            QueueAttributeName::MessageRetentionPeriod,
            retention.as_secs().to_string(),
        );
        if self.config.fifo {
            req = req
                .attributes(QueueAttributeName::FifoQueue, "true")
                .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
        }
        tracing::info!(queue = name, "creating SQS queue");
        let out = req
            .send()
            .await
            .map_err(|e| sdk_error(&format!("CreateQueue `{name}`"), e))?;
        Ok(out.queue_url.unwrap_or_default())
    }
}
