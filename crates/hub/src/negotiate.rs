//! Connections created by `POST {path}/negotiate` and not yet finished: the secret
//! connection token the client presents as `id`, the principal it was issued to, and the
//! transport that claimed it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::WebSocket;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use parking_lot::Mutex;
use rand::rngs::OsRng;
use rand::RngCore as _;
use tokio::sync::mpsc;

use crate::backend::Principal;
use crate::http_transport::{HttpConnection, HttpTransportKind};

/// Random bytes in a connection token: 256 bits, too many to guess.
const TOKEN_BYTES: usize = 32;
/// Random bytes in a public connection id.
const CONNECTION_ID_BYTES: usize = 16;

/// Returns a random URL-safe string. The official clients put the token into the query
/// string without escaping, so it must not need escaping.
fn random_url_safe(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// Creates a public connection id, for connections that skip negotiate.
pub(crate) fn new_connection_id() -> String {
    random_url_safe(CONNECTION_ID_BYTES)
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NegotiatedIds {
    /// Public id, safe to log.
    pub connection_id: String,
    /// Secret that authorizes the WebSocket connect.
    pub connection_token: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClaimError {
    NotFound,
    OtherPrincipal,
    /// A second WebSocket or a second event stream for the same token.
    AlreadyConnected,
    /// The token is bound to a different transport.
    OtherTransport,
    /// A send or delete for a token whose HTTP transport has not started yet.
    NotStarted,
}

/// The transport a negotiated connection uses, once it has started.
enum Binding {
    Unclaimed,
    /// `reconnect` hands a new WebSocket to the session of a stateful reconnect connection.
    WebSocket {
        reconnect: Option<mpsc::Sender<WebSocket>>,
    },
    Http(Arc<HttpConnection>),
}

struct Negotiation {
    connection_id: String,
    principal: Principal,
    /// Whether negotiate granted stateful reconnect.
    stateful: bool,
    binding: Binding,
}

/// A successful [`Negotiations::claim`].
pub(crate) enum WebSocketClaim {
    /// The first WebSocket of the connection. A stateful reconnect connection receives its
    /// later WebSockets through `reconnects`.
    New {
        connection_id: String,
        reconnects: Option<mpsc::Receiver<WebSocket>>,
    },
    /// A WebSocket that replaces the lost one of a stateful reconnect connection.
    Reconnect(mpsc::Sender<WebSocket>),
}

/// A successful [`Negotiations::claim_http`].
pub(crate) struct HttpClaim {
    pub connection: Arc<HttpConnection>,
    /// True when this request started the transport.
    pub created: bool,
}

#[derive(Default)]
pub(crate) struct Negotiations {
    by_token: Mutex<HashMap<String, Negotiation>>,
}

impl Negotiations {
    pub fn create(&self, principal: Principal, stateful: bool) -> NegotiatedIds {
        let ids = NegotiatedIds {
            connection_id: new_connection_id(),
            connection_token: random_url_safe(TOKEN_BYTES),
        };
        let negotiation = Negotiation {
            connection_id: ids.connection_id.clone(),
            principal,
            stateful,
            binding: Binding::Unclaimed,
        };
        self.by_token
            .lock()
            .insert(ids.connection_token.clone(), negotiation);
        ids
    }

    /// Binds the token to a WebSocket. A token can be claimed once, and only by the
    /// principal it was issued to, unless it negotiated stateful reconnect: then later
    /// WebSockets replace the first.
    pub fn claim(&self, token: &str, principal: &Principal) -> Result<WebSocketClaim, ClaimError> {
        let mut by_token = self.by_token.lock();
        let negotiation = owned_negotiation(&mut by_token, token, principal)?;
        match &negotiation.binding {
            Binding::Unclaimed => {}
            Binding::WebSocket {
                reconnect: Some(reconnect),
            } => return Ok(WebSocketClaim::Reconnect(reconnect.clone())),
            Binding::WebSocket { reconnect: None } => return Err(ClaimError::AlreadyConnected),
            Binding::Http(_) => return Err(ClaimError::OtherTransport),
        }

        let (reconnect, reconnects) = if negotiation.stateful {
            let (sender, receiver) = mpsc::channel(1);
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        negotiation.binding = Binding::WebSocket { reconnect };
        Ok(WebSocketClaim::New {
            connection_id: negotiation.connection_id.clone(),
            reconnects,
        })
    }

    /// Returns the token's HTTP transport of `kind`, starting it with `create` (called
    /// with the connection id) if the token is still unclaimed.
    pub fn claim_http(
        &self,
        token: &str,
        principal: &Principal,
        kind: HttpTransportKind,
        create: impl FnOnce(&str) -> Arc<HttpConnection>,
    ) -> Result<HttpClaim, ClaimError> {
        let mut by_token = self.by_token.lock();
        let negotiation = owned_negotiation(&mut by_token, token, principal)?;
        match &negotiation.binding {
            Binding::Unclaimed => {
                let connection = create(&negotiation.connection_id);
                negotiation.binding = Binding::Http(Arc::clone(&connection));
                Ok(HttpClaim {
                    connection,
                    created: true,
                })
            }
            Binding::Http(connection) if connection.kind == kind => Ok(HttpClaim {
                connection: Arc::clone(connection),
                created: false,
            }),
            Binding::WebSocket { .. } | Binding::Http(_) => Err(ClaimError::OtherTransport),
        }
    }

    /// Returns the token's started HTTP transport, for sends and deletes.
    pub fn http_connection(
        &self,
        token: &str,
        principal: &Principal,
    ) -> Result<Arc<HttpConnection>, ClaimError> {
        let mut by_token = self.by_token.lock();
        let negotiation = owned_negotiation(&mut by_token, token, principal)?;
        match &negotiation.binding {
            Binding::Http(connection) => Ok(Arc::clone(connection)),
            Binding::Unclaimed => Err(ClaimError::NotStarted),
            Binding::WebSocket { .. } => Err(ClaimError::OtherTransport),
        }
    }

    /// Returns the token's long polling connection without checking the caller, for a poll
    /// whose credential was rejected.
    ///
    /// A client whose access was just revoked polls for the `Close` message with a bearer
    /// token that no longer authenticates. The secret connection token is enough for that
    /// poll, because it receives only the final frame, which reveals why the connection
    /// closed (see [`crate::http_transport::poll_final_frame`]).
    pub fn long_polling_connection(&self, token: &str) -> Option<Arc<HttpConnection>> {
        let by_token = self.by_token.lock();
        match &by_token.get(token)?.binding {
            Binding::Http(connection) if connection.kind == HttpTransportKind::LongPolling => {
                Some(Arc::clone(connection))
            }
            _ => None,
        }
    }

    /// Returns whether this process has the token, claimed or not.
    pub fn contains(&self, token: &str) -> bool {
        self.by_token.lock().contains_key(token)
    }

    /// Forgets the token, so later connects with it get 404.
    pub fn remove(&self, token: &str) {
        self.by_token.lock().remove(token);
    }

    /// Forgets the token unless a WebSocket has claimed it. Returns whether it was removed.
    pub fn remove_unclaimed(&self, token: &str) -> bool {
        let mut by_token = self.by_token.lock();
        let unclaimed = by_token
            .get(token)
            .is_some_and(|negotiation| matches!(negotiation.binding, Binding::Unclaimed));
        if unclaimed {
            by_token.remove(token);
        }
        unclaimed
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_token.lock().len()
    }
}

fn owned_negotiation<'a>(
    by_token: &'a mut HashMap<String, Negotiation>,
    token: &str,
    principal: &Principal,
) -> Result<&'a mut Negotiation, ClaimError> {
    let negotiation = by_token.get_mut(token).ok_or(ClaimError::NotFound)?;
    if negotiation.principal != *principal {
        return Err(ClaimError::OtherPrincipal);
    }
    Ok(negotiation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn principal() -> Principal {
        Principal::new(Uuid::new_v4(), Uuid::new_v4())
    }

    #[test]
    fn create_returns_distinct_url_safe_ids() {
        let negotiations = Negotiations::default();

        let ids = negotiations.create(principal(), false);

        assert_ne!(ids.connection_id, ids.connection_token);
        assert_eq!(ids.connection_token.len(), 43);
        assert!(ids
            .connection_token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn claim_succeeds_once() {
        let negotiations = Negotiations::default();
        let owner = principal();
        let ids = negotiations.create(owner.clone(), false);

        let first = negotiations.claim(&ids.connection_token, &owner);
        let second = negotiations.claim(&ids.connection_token, &owner);

        let Ok(WebSocketClaim::New {
            connection_id,
            reconnects,
        }) = first
        else {
            panic!("the first claim starts a new connection");
        };
        assert_eq!(connection_id, ids.connection_id);
        assert!(reconnects.is_none());
        assert!(matches!(second, Err(ClaimError::AlreadyConnected)));
    }

    #[test]
    fn claim_rejects_other_principal() {
        let negotiations = Negotiations::default();
        let ids = negotiations.create(principal(), false);

        let result = negotiations.claim(&ids.connection_token, &principal());

        assert!(matches!(result, Err(ClaimError::OtherPrincipal)));
    }

    #[test]
    fn claim_unknown_token_fails() {
        let negotiations = Negotiations::default();

        assert!(matches!(
            negotiations.claim("missing", &principal()),
            Err(ClaimError::NotFound)
        ));
    }

    #[test]
    fn stateful_claim_accepts_reconnects() {
        let negotiations = Negotiations::default();
        let owner = principal();
        let ids = negotiations.create(owner.clone(), true);

        let first = negotiations.claim(&ids.connection_token, &owner);
        let second = negotiations.claim(&ids.connection_token, &owner);

        assert!(matches!(
            first,
            Ok(WebSocketClaim::New {
                reconnects: Some(_),
                ..
            })
        ));
        assert!(matches!(second, Ok(WebSocketClaim::Reconnect(_))));
    }

    #[test]
    fn remove_unclaimed_keeps_connected_tokens() {
        let negotiations = Negotiations::default();
        let owner = principal();
        let connected = negotiations.create(owner.clone(), false);
        let idle = negotiations.create(owner.clone(), false);
        negotiations
            .claim(&connected.connection_token, &owner)
            .unwrap();

        assert!(!negotiations.remove_unclaimed(&connected.connection_token));
        assert!(negotiations.remove_unclaimed(&idle.connection_token));
        assert_eq!(negotiations.len(), 1);
    }
}
