//! The email worker: sends each mail announced by a `mail.queued` event to the configured
//! SMTP server, once per event however often RabbitMQ delivers it.

use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use tasklane_bus::rabbit;
use tasklane_config::MailSettings;
use tasklane_domain::EventEnvelope;
use tasklane_store::mail::{self, UnsentMail};
use tasklane_store::{idempotency, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Name under which this worker records the messages it applied.
const CONSUMER: &str = "email";
/// Unacknowledged messages in flight; mail is sent one at a time, so a few suffice.
const PREFETCH: u16 = 8;

type Transport = AsyncSmtpTransport<Tokio1Executor>;

pub struct EmailWorker {
    pub pool: PgPool,
    pub rabbit_url: String,
    pub topology: tasklane_bus::Topology,
    pub retry_delay: Duration,
    pub settings: MailSettings,
}

/// The result of handling one mail.
enum Outcome {
    Sent,
    /// The event was handled before, or its mail was sent already.
    Duplicate,
    /// The SMTP server or the address rejected the mail for good; retrying cannot help.
    Rejected(String),
}

impl EmailWorker {
    /// Consumes `task.email` until `cancel` fires, reconnecting after failures. Stops at
    /// once, with an error in the log, when the `from` setting is not a valid mailbox.
    pub async fn run(self, cancel: CancellationToken) {
        let from: Mailbox = match self.settings.from.parse() {
            Ok(from) => from,
            Err(error) => {
                tracing::error!(from = %self.settings.from, %error, "mail.from is not a valid mailbox such as \"Tasklane <no-reply@example.com>\"; the email worker is not running");
                return;
            }
        };
        let transport = self.transport();
        tracing::info!(
            smtp_host = %self.settings.smtp_host,
            smtp_port = self.settings.smtp_port,
            "email worker started"
        );
        loop {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => break,
                outcome = self.consume(&transport, &from) => outcome,
            };
            if let Err(error) = outcome {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "email worker lost rabbitmq, reconnecting"
                );
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.retry_delay) => {}
            }
        }
        tracing::info!("email worker stopped");
    }

    /// Builds the SMTP client. It speaks plain SMTP: the server must be on the same host
    /// or a trusted network, because neither the mail nor the credentials are encrypted.
    fn transport(&self) -> Transport {
        let mut builder = Transport::builder_dangerous(&self.settings.smtp_host)
            .port(self.settings.smtp_port)
            .timeout(Some(self.settings.smtp_timeout));
        if let (Some(username), Some(password)) =
            (&self.settings.smtp_username, &self.settings.smtp_password)
        {
            let credentials =
                Credentials::new(username.clone(), password.expose_secret().to_owned());
            builder = builder.credentials(credentials);
        }
        builder.build()
    }

    async fn consume(&self, transport: &Transport, from: &Mailbox) -> anyhow::Result<()> {
        let connection = rabbit::connect(&self.rabbit_url).await?;
        let setup = connection.create_channel().await?;
        rabbit::declare_topology(&setup, &self.topology).await?;
        let queue = self.topology.email_queue();
        let (_channel, mut consumer) =
            rabbit::consume(&connection, &queue, CONSUMER, PREFETCH).await?;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            self.handle(&delivery, transport, from).await?;
        }
        anyhow::bail!("the rabbitmq consumer stream ended")
    }

    async fn handle(
        &self,
        delivery: &Delivery,
        transport: &Transport,
        from: &Mailbox,
    ) -> anyhow::Result<()> {
        let event: EventEnvelope = match serde_json::from_slice(&delivery.data) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(%error, "email message is not an event envelope, dead-lettered");
                rabbit::dead_letter(delivery).await?;
                return Ok(());
            }
        };
        // The queue also receives user and reminder events, which send no mail yet.
        if event.event_type != "mail.queued" {
            rabbit::ack(delivery).await?;
            return Ok(());
        }
        let Some(mail_id) = mail_id_of(&event) else {
            tracing::error!(event_id = %event.event_id, "mail.queued event has no valid data.mail_id, dead-lettered");
            rabbit::dead_letter(delivery).await?;
            return Ok(());
        };

        match self.send(event.event_id, mail_id, transport, from).await {
            Ok(Outcome::Sent) => {
                tracing::info!(event_id = %event.event_id, %mail_id, "mail sent");
                rabbit::ack(delivery).await?;
            }
            Ok(Outcome::Duplicate) => {
                tracing::debug!(event_id = %event.event_id, %mail_id, "mail handled before, skipped");
                rabbit::ack(delivery).await?;
            }
            Ok(Outcome::Rejected(reason)) => {
                tracing::error!(event_id = %event.event_id, %mail_id, reason, "mail rejected for good, dropped");
                rabbit::ack(delivery).await?;
            }
            Err(error) => {
                tracing::warn!(event_id = %event.event_id, %mail_id, error = format!("{error:#}"), "sending mail failed, requeued");
                tokio::time::sleep(self.retry_delay).await;
                rabbit::requeue(delivery).await?;
            }
        }
        Ok(())
    }

    /// Sends the mail inside a transaction that records the event as processed and the mail
    /// as sent, so a redelivered event finds both and sends nothing. The row stays locked
    /// while the SMTP server responds, so a parallel redelivery waits instead of sending too.
    ///
    /// NOTE: when the SMTP server accepts the mail but the commit fails, the redelivery
    /// sends it again; SMTP offers no way to make the two steps atomic.
    async fn send(
        &self,
        event_id: Uuid,
        mail_id: Uuid,
        transport: &Transport,
        from: &Mailbox,
    ) -> anyhow::Result<Outcome> {
        let mut tx = self.pool.begin().await?;
        if !idempotency::mark_processed(&mut tx, CONSUMER, event_id).await? {
            return Ok(Outcome::Duplicate);
        }
        let Some(unsent) = mail::lock_unsent(&mut tx, mail_id).await? else {
            tx.commit().await?;
            return Ok(Outcome::Duplicate);
        };
        let message = match build_message(&unsent, from) {
            Ok(message) => message,
            Err(reason) => {
                tx.commit().await?;
                return Ok(Outcome::Rejected(reason));
            }
        };
        match transport.send(message).await {
            Ok(_) => {}
            Err(error) if error.is_permanent() => {
                tx.commit().await?;
                return Ok(Outcome::Rejected(format!("{error}")));
            }
            Err(error) => return Err(error.into()),
        }
        mail::mark_sent(&mut tx, mail_id).await?;
        tx.commit().await?;
        Ok(Outcome::Sent)
    }
}

fn mail_id_of(event: &EventEnvelope) -> Option<Uuid> {
    event.data.get("mail_id")?.as_str()?.parse().ok()
}

/// Builds a plain-text message whose `Message-ID` is derived from the mail's id, so
/// receivers can recognise a repeat of the same mail.
fn build_message(unsent: &UnsentMail, from: &Mailbox) -> Result<Message, String> {
    let to: Mailbox = unsent
        .recipient
        .parse()
        .map_err(|error| format!("invalid recipient {:?}: {error}", unsent.recipient))?;
    let domain = from.email.domain().to_owned();
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(unsent.subject.clone())
        .message_id(Some(format!("<{}@{domain}>", unsent.id)))
        .header(ContentType::TEXT_PLAIN)
        .body(unsent.body.clone())
        .map_err(|error| format!("building the message failed: {error}"))
}
