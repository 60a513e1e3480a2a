//! Publishing with publisher confirms: every message of a publish is sent (persistent,
//! mandatory, highest priority first), then every confirm awaited; a message returned as
//! unroutable or nacked by the broker makes the publish fail.

use std::collections::HashMap;

use futures::future::join_all;
use lapin::options::BasicPublishOptions;
use lapin::publisher_confirm::Confirmation;
use lapin::BasicProperties;
use switchyard_core::{
    adapter::bundle::{self, Bundle},
    Error, ErrorKind, Result,
};

use crate::config::RabbitConfig;
use crate::connection::Link;
use crate::error::unavailable;
use crate::wire::amqp_priority;

impl Link {
    /// Publishes `bundles` on the confirm-mode channel, each to the broker queue `names` gives
    /// for its Switchyard queue (declared already), and waits for every confirm. The first
    /// refusal is the error; an unroutable message's queue is forgotten, to be declared again.
    pub(crate) async fn publish_confirmed(
        &self,
        config: &RabbitConfig,
        names: &HashMap<String, String>,
        bundles: &[Bundle],
    ) -> Result<()> {
        // Highest priority first: a consumer already waiting takes the first message that
        // arrives, and the broker orders only the ones that queue up behind it.
        let mut ordered: Vec<&Bundle> = bundles.iter().collect();
        ordered.sort_by_key(|m| std::cmp::Reverse(m.priority));
        // Pipelined: send every message, then wait for every confirm.
        let mut confirms = Vec::with_capacity(ordered.len());
        for m in ordered {
            let name = &names[&m.queue];
            let body = bundle::encode_ids(&m.job_ids);
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_priority(amqp_priority(m.priority, config.max_priority))
                .with_message_id(m.job_ids[0].to_string().into())
                .with_content_type("text/plain".into());
            let confirm = self
                .publisher
                .basic_publish(
                    "",
                    name,
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body.as_bytes(),
                    props,
                )
                .await
                .map_err(|e| unavailable("publish failed", e))?;
            confirms.push((m, confirm));
        }
        let (sent, pending): (Vec<&Bundle>, Vec<_>) = confirms.into_iter().unzip();
        let mut first_error = None;
        for (m, confirmed) in sent.into_iter().zip(join_all(pending).await) {
            let err = match confirmed {
                Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => continue,
                Ok(Confirmation::Ack(Some(_))) => {
                    // Returned as unroutable: the queue vanished (deleted or expired).
                    self.forget(&names[&m.queue]);
                    Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "RabbitMQ returned the message for job {} as unroutable: queue `{}` \
                             does not exist; it is declared again on the next publish",
                            m.job_ids[0], names[&m.queue]
                        ),
                    )
                }
                Ok(Confirmation::Nack(_)) => Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "RabbitMQ refused the message for job {} (nack)",
                        m.job_ids[0]
                    ),
                ),
                Err(e) => unavailable("publisher confirm failed", e),
            };
            first_error.get_or_insert(err);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
