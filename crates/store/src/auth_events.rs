//! Security events (logins, failures, lockouts, token reuse, membership changes) written
//! to the outbox like every other event.

use tasklane_domain::{EventEnvelope, EventType};
use uuid::Uuid;

use crate::{outbox, StoreError, Tx};

/// Appends an auth event. `tenant_id` is `None` when no tenant is involved, such as a
/// failed login to an unknown account.
pub async fn append(
    tx: &mut Tx<'_>,
    event_type: EventType,
    tenant_id: Option<Uuid>,
    actor_id: Option<Uuid>,
    subject_id: Uuid,
    data: serde_json::Value,
) -> Result<(), StoreError> {
    let mut event = EventEnvelope::new(event_type, Uuid::nil(), actor_id, subject_id, None, data);
    event.tenant_id = tenant_id;
    outbox::append(tx, &event).await
}
