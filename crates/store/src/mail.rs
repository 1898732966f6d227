//! Outgoing mail. A queued mail is a row in `outgoing_mail` plus a `mail.queued` outbox
//! event that carries only the row's id, because mail bodies can contain single-use tokens
//! and outbox events also reach Kafka, analytics and the audit queue.

use sqlx::FromRow;
use tasklane_domain::{new_id, EventEnvelope, EventType};
use uuid::Uuid;

use crate::{outbox, StoreError, Tx};

/// A plain-text mail to one recipient.
#[derive(Debug, Clone)]
pub struct NewMail<'a> {
    pub user_id: Option<Uuid>,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Stores a mail and its `mail.queued` event in the caller's transaction, and returns the
/// mail's id.
pub async fn queue(tx: &mut Tx<'_>, mail: NewMail<'_>) -> Result<Uuid, StoreError> {
    let mail_id = new_id();
    sqlx::query(
        "insert into outgoing_mail (id, user_id, recipient, subject, body)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(mail_id)
    .bind(mail.user_id)
    .bind(mail.recipient)
    .bind(mail.subject)
    .bind(mail.body)
    .execute(&mut **tx)
    .await?;

    let data = serde_json::json!({ "mail_id": mail_id });
    let mut event = EventEnvelope::new(
        EventType::MailQueued,
        Uuid::nil(),
        None,
        mail_id,
        None,
        data,
    );
    event.tenant_id = None;
    outbox::append(tx, &event).await?;
    Ok(mail_id)
}

/// A mail the SMTP server has not accepted yet.
#[derive(Debug, Clone, FromRow)]
pub struct UnsentMail {
    pub id: Uuid,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// Locks an unsent mail for the rest of the transaction and reads it. Returns `None` when
/// the mail does not exist or was sent already.
pub async fn lock_unsent(tx: &mut Tx<'_>, mail_id: Uuid) -> Result<Option<UnsentMail>, StoreError> {
    let mail = sqlx::query_as::<_, UnsentMail>(
        "select id, recipient, subject, body from outgoing_mail
         where id = $1 and sent_at is null and body is not null
         for update",
    )
    .bind(mail_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(mail)
}

/// Records that the SMTP server accepted a mail, and clears its body so the token it
/// carried is not kept.
pub async fn mark_sent(tx: &mut Tx<'_>, mail_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("update outgoing_mail set sent_at = now(), body = null where id = $1")
        .bind(mail_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
