//! Presence sets in Redis, and the subscription that brings their changes to this
//! node's hub.
//!
//! Each set is a sorted set `{prefix}:presence:{group}` whose members are
//! `{user_id}/{connection_id}`, scored by the last heartbeat in milliseconds of the Redis
//! server clock, so nodes with skewed clocks agree on what expired. Every change runs as
//! one Lua script that updates the set, drops expired entries and publishes the set's
//! members on `{prefix}:hub:presence`. Redis runs scripts one at a time and delivers
//! published messages in order, so the last message every node receives for a group
//! matches the set's final state.
//!
//! Each node adds the users' display names and tenant handles from PostgreSQL before it
//! sends a set to its clients.
//!
//! Presence changes use their own channel rather than the relay's backplane, because
//! they are not numbered group messages: they are sent once, never stored, and never
//! replayed by `Resume`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use redis::aio::ConnectionManager;
use tasklane_config::{NamespaceSettings, PresenceSettings};
use tasklane_hub::{Hub, PresenceError, PresenceMember, PresenceStore, PresenceUser};
use tasklane_store::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Channel name under the namespace prefix on which presence changes are published.
pub const PRESENCE_CHANNEL: &str = "hub:presence";

/// Maximum wait for Redis when a node starts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Delay before a failed subscription connects again.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Updates one set and publishes it when it changed. KEYS[1] is the set, and ARGV is the
/// channel, the group, the expiry in milliseconds, `refresh` or `remove`, then members.
/// Returns the number of entries added, removed or expired.
const UPDATE_SCRIPT: &str = r"
local key = KEYS[1]
local channel, group, op = ARGV[1], ARGV[2], ARGV[4]
local expiry = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local changed = redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (now - expiry))
for i = 5, #ARGV do
  if op == 'refresh' then
    changed = changed + redis.call('ZADD', key, now, ARGV[i])
  else
    changed = changed + redis.call('ZREM', key, ARGV[i])
  end
end
if redis.call('EXISTS', key) == 1 then
  redis.call('PEXPIRE', key, expiry)
end
if changed > 0 then
  local members = redis.call('ZRANGE', key, 0, -1)
  redis.call('PUBLISH', channel, group .. '\n' .. table.concat(members, ' '))
end
return changed
";

/// Returns the members of a set whose heartbeat is within the expiry. KEYS[1] is the set
/// and ARGV[1] the expiry in milliseconds.
const MEMBERS_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
";

/// The [`PresenceStore`] of every hub node, in Redis.
pub struct RedisPresence {
    connection: ConnectionManager,
    /// PostgreSQL, for the users' names and handles.
    pool: PgPool,
    namespace: NamespaceSettings,
    expiry: Duration,
}

impl RedisPresence {
    /// Connects to Redis at `url`.
    pub async fn connect(
        url: &str,
        pool: PgPool,
        namespace: NamespaceSettings,
        settings: &PresenceSettings,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection =
            ConnectionManager::new_with_config(client, tasklane_cache::connection_manager_config())
                .await?;
        Ok(Self {
            connection,
            pool,
            namespace,
            expiry: settings.expiry,
        })
    }

    fn key(&self, group: &str) -> String {
        self.namespace.redis_key(&format!("presence:{group}"))
    }

    fn expiry_millis(&self) -> u64 {
        u64::try_from(self.expiry.as_millis()).unwrap_or(u64::MAX)
    }

    async fn update(
        &self,
        group: &str,
        members: &[PresenceMember],
        operation: &str,
    ) -> Result<(), PresenceError> {
        let mut command = redis::cmd("EVAL");
        command
            .arg(UPDATE_SCRIPT)
            .arg(1)
            .arg(self.key(group))
            .arg(self.namespace.redis_key(PRESENCE_CHANNEL))
            .arg(group)
            .arg(self.expiry_millis())
            .arg(operation);
        for member in members {
            command.arg(format!("{}/{}", member.user_id, member.connection_id));
        }
        self.run_script::<i64>(&command)
            .await
            .map(|_| ())
            .map_err(|error| PresenceError(error.to_string()))
    }

    /// Runs `command`, and once more when it fails with a connection error. After Redis
    /// comes back, the connection manager fails the first command with the error of its
    /// last failed reconnection and only then connects again, which the second try waits
    /// for. Both scripts may run twice: adding, removing or reading members again changes
    /// nothing, and publishing a set twice sends the same list twice.
    async fn run_script<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        let mut connection = self.connection.clone();
        match command.query_async(&mut connection).await {
            Err(error) if error.is_io_error() => command.query_async(&mut connection).await,
            result => result,
        }
    }
}

#[async_trait::async_trait]
impl PresenceStore for RedisPresence {
    async fn refresh(&self, group: &str, members: &[PresenceMember]) -> Result<(), PresenceError> {
        self.update(group, members, "refresh").await
    }

    async fn remove(&self, group: &str, members: &[PresenceMember]) -> Result<(), PresenceError> {
        self.update(group, members, "remove").await
    }

    async fn users(&self, group: &str) -> Result<Vec<PresenceUser>, PresenceError> {
        let mut command = redis::cmd("EVAL");
        command
            .arg(MEMBERS_SCRIPT)
            .arg(1)
            .arg(self.key(group))
            .arg(self.expiry_millis());
        let members: Vec<String> = self
            .run_script(&command)
            .await
            .map_err(|error| PresenceError(error.to_string()))?;
        let users = distinct_users(members.iter().map(String::as_str));
        Ok(describe_users(&self.pool, group, &users).await)
    }
}

#[derive(sqlx::FromRow)]
struct UserNameRow {
    id: Uuid,
    name: String,
    handle: String,
}

/// Adds each user's name and handle in the tenant of `group` (the tenant itself, or the
/// task's tenant). Users without a membership there, and every user when PostgreSQL
/// fails, keep only their id.
async fn describe_users(pool: &PgPool, group: &str, users: &[Uuid]) -> Vec<PresenceUser> {
    let mut described: Vec<PresenceUser> = users.iter().copied().map(PresenceUser::new).collect();
    let tenant_query = match group.split_once(':') {
        Some(("tenant", id)) => id.parse::<Uuid>().ok().map(|id| ("select $2::uuid", id)),
        Some(("task", id)) => id
            .parse::<Uuid>()
            .ok()
            .map(|id| ("select tenant_id from tasks where id = $2", id)),
        _ => None,
    };
    let Some((tenant_select, group_id)) = tenant_query else {
        return described;
    };
    let query = format!(
        "select u.id, u.name, m.handle
         from users u join memberships m on m.user_id = u.id
         where u.id = any($1) and m.tenant_id = ({tenant_select})"
    );
    let rows = sqlx::query_as::<_, UserNameRow>(&query)
        .bind(users)
        .bind(group_id)
        .fetch_all(pool)
        .await;
    match rows {
        Ok(rows) => {
            for row in rows {
                if let Some(user) = described.iter_mut().find(|user| user.user_id == row.id) {
                    user.name = Some(row.name);
                    user.handle = Some(row.handle);
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, %group, "reading presence users' names failed, sending ids only");
        }
    }
    described
}

/// Returns the distinct user ids of `{user_id}/{connection_id}` members, sorted, and
/// skips members that do not start with a user id.
fn distinct_users<'a>(members: impl Iterator<Item = &'a str>) -> Vec<Uuid> {
    let mut users: Vec<Uuid> = members
        .filter_map(|member| member.split_once('/'))
        .filter_map(|(user_id, _)| user_id.parse().ok())
        .collect();
    users.sort_unstable();
    users.dedup();
    users
}

/// Splits a published change, `{group}\n{member} {member}...`, into the group and its
/// distinct users.
fn parse_change(payload: &str) -> Option<(&str, Vec<Uuid>)> {
    let (group, members) = payload.split_once('\n')?;
    Some((group, distinct_users(members.split_whitespace())))
}

/// Delivers the changes that `messages` receives to `hub`, then subscribes again after a
/// lost connection, until `shutdown` is cancelled. A change published while the
/// subscription was down is missed, so after subscribing again this node reads every
/// presence set it has clients for and sends the lists anew.
async fn run_subscriber(
    mut messages: Option<PresenceMessages>,
    store: Arc<RedisPresence>,
    pool: PgPool,
    redis_url: String,
    channel: String,
    hub: Hub,
    shutdown: CancellationToken,
) {
    loop {
        if let Some(stream) = messages.take() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = deliver(stream, &pool, &channel, &hub) => {
                    tracing::warn!(%channel, "presence subscription ended, subscribing again");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
        }
        match subscribe(&redis_url, &channel).await {
            Ok(stream) => {
                messages = Some(stream);
                resend_local_presence(&store, &hub).await;
            }
            Err(error) => {
                tracing::warn!(%error, %channel, "presence subscription failed, retrying");
            }
        }
    }
}

/// Sends every presence set that this node has clients for to them again.
async fn resend_local_presence(store: &RedisPresence, hub: &Hub) {
    let groups = hub.presence_groups();
    tracing::info!(
        groups = groups.len(),
        "presence subscription restored, resending presence lists"
    );
    for group in groups {
        match store.users(&group).await {
            Ok(users) => hub.dispatch_presence(&group, &users),
            Err(error) => {
                tracing::warn!(%error, %group, "reading presence failed, its list is resent at its next change");
            }
        }
    }
}

type PresenceMessages = std::pin::Pin<Box<dyn futures::Stream<Item = redis::Msg> + Send>>;

async fn subscribe(redis_url: &str, channel: &str) -> Result<PresenceMessages, redis::RedisError> {
    let client = redis::Client::open(redis_url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(Box::pin(pubsub.into_on_message()))
}

async fn deliver(mut messages: PresenceMessages, pool: &PgPool, channel: &str, hub: &Hub) {
    while let Some(message) = messages.next().await {
        let Ok(payload) = message.get_payload::<String>() else {
            tracing::warn!(%channel, "presence change is not text, dropped");
            continue;
        };
        match parse_change(&payload) {
            Some((group, users)) => {
                let users = describe_users(pool, group, &users).await;
                hub.dispatch_presence(group, &users);
            }
            None => tracing::warn!(%channel, "presence change has no group line, dropped"),
        }
    }
}

/// Checks that the heartbeat interval is positive and shorter than the expiry, because
/// entries would otherwise expire between two heartbeats of a live node.
pub fn validate(settings: &PresenceSettings) -> Result<(), String> {
    let (interval, expiry) = (settings.heartbeat_interval, settings.expiry);
    if interval.is_zero() || interval >= expiry {
        return Err(format!(
            "invalid presence settings: heartbeat_interval ({interval:?}) must be longer than \
             zero and shorter than expiry ({expiry:?})"
        ));
    }
    Ok(())
}

/// Connects the presence store, subscribes to its changes, and starts the subscriber and
/// the hub's heartbeat on `tasks`. Logs and leaves presence off when Redis cannot be
/// reached within [`CONNECT_TIMEOUT`].
///
/// NOTE: presence stays off until the process restarts when Redis is down at start-up.
pub async fn start(
    hub: &Hub,
    pool: &PgPool,
    redis_url: &str,
    namespace: &NamespaceSettings,
    settings: &PresenceSettings,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: &CancellationToken,
) {
    let connect = RedisPresence::connect(redis_url, pool.clone(), namespace.clone(), settings);
    let store = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(store)) => store,
        Ok(Err(error)) => {
            tracing::error!(%error, "presence store could not connect to redis, presence is off");
            return;
        }
        Err(_elapsed) => {
            tracing::error!(
                timeout = ?CONNECT_TIMEOUT,
                "presence store timed out connecting to redis, presence is off"
            );
            return;
        }
    };
    let store = Arc::new(store);
    hub.set_presence(Arc::clone(&store) as Arc<dyn PresenceStore>);
    let channel = namespace.redis_key(PRESENCE_CHANNEL);
    // Subscribing before the node serves clients means no change of its own is missed.
    let messages = match subscribe(redis_url, &channel).await {
        Ok(messages) => Some(messages),
        Err(error) => {
            tracing::warn!(%error, %channel, "presence subscription failed, retrying");
            None
        }
    };
    tasks.spawn(run_subscriber(
        messages,
        store,
        pool.clone(),
        redis_url.to_owned(),
        channel,
        hub.clone(),
        shutdown.clone(),
    ));
    let (hub, interval, shutdown) = (hub.clone(), settings.heartbeat_interval, shutdown.clone());
    tasks.spawn(async move { hub.run_presence_heartbeat(interval, shutdown).await });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_change_dedups_users() {
        let (first, second) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let payload = format!("task:x\n{second}/c1 {first}/c2 {second}/c3");

        let (group, users) = parse_change(&payload).unwrap();

        assert_eq!(group, "task:x");
        assert_eq!(users, [first, second]);
    }

    #[test]
    fn parse_change_of_empty_set() {
        let (group, users) = parse_change("tenant:x\n").unwrap();

        assert_eq!(group, "tenant:x");
        assert!(users.is_empty());
    }

    #[test]
    fn validate_rejects_bad_intervals() {
        let settings = |interval: u64, expiry: u64| PresenceSettings {
            heartbeat_interval: Duration::from_secs(interval),
            expiry: Duration::from_secs(expiry),
        };

        assert_eq!(validate(&settings(10, 30)), Ok(()));
        for (interval, expiry) in [(0, 30), (30, 30), (40, 30)] {
            let error = validate(&settings(interval, expiry)).unwrap_err();
            assert!(error.contains("heartbeat_interval"), "{error}");
        }
    }

    #[test]
    fn parse_change_without_group_line_fails() {
        assert!(parse_change("task:x").is_none());
    }
}
