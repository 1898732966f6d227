//! Building and running the application: one HTTP server for the api and hub roles, and
//! one task per background role, all stopped by one cancellation token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use secrecy::ExposeSecret;
use tasklane_api::browser_session::SessionAuthenticator;
use tasklane_api::{AppState, DependencyProbe};
use tasklane_auth::TokenIssuer;
use tasklane_bus::kafka::{self, KafkaConsumer, KafkaProducer};
use tasklane_bus::Topology;
use tasklane_cache::backplane::HUB_CHANNEL;
use tasklane_cache::Cache;
use tasklane_config::Settings;
use tasklane_hub::{Hub, HubSettings};
use tasklane_store::access_cache::AccessCache;
use tasklane_store::PgPool;
use tasklane_workers::bulk::BulkWorker;
use tasklane_workers::email::EmailWorker;
use tasklane_workers::notify::NotifyConsumer;
use tasklane_workers::relay::{
    self, Destination, HubDestination, KafkaDestination, RabbitDestination,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::hub_backend::StoreHubBackend;
use crate::hub_cluster::hub_cluster;
use crate::hub_feed::HubFeed;
use crate::probes::{KafkaProbe, RabbitProbe};
use crate::roles::Role;

/// Applies database migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = connect_database(settings).await?;
    tasklane_store::migrate(&pool)
        .await
        .context("applying migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn connect_database(settings: &Settings) -> anyhow::Result<PgPool> {
    tasklane_store::connect(
        settings.database.url.expose_secret(),
        settings.database.max_connections,
    )
    .await
    .context("connecting to PostgreSQL")
}

/// A running application.
pub struct Application {
    /// Address of the HTTP server, when the process runs the api or hub role.
    pub address: Option<SocketAddr>,
    pub hub: Option<Hub>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    shutdown_grace: Duration,
}

impl Application {
    /// Connects to every dependency the roles need, binds the HTTP port and starts the roles.
    pub async fn start(settings: Settings, roles: &[Role]) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let pool = connect_database(&settings).await?;
        tasklane_store::migrate(&pool)
            .await
            .context("applying migrations")?;
        let cache = Cache::connect(
            settings.redis.url.expose_secret(),
            settings.namespace.clone(),
        )
        .await;
        let keys = crate::token_keys::load(&settings.auth, &pool).await?;
        let tokens = TokenIssuer::new(
            keys,
            &settings.auth.issuer,
            &settings.auth.audience,
            settings.auth.access_token_ttl,
        );
        let topology = Topology::new(settings.namespace.clone()).with_rabbit_queues(
            &settings.rabbitmq.queue_type,
            settings.rabbitmq.queue_expires,
        );
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let access = AccessCache::new(pool.clone());
        if roles.contains(&Role::Api) || roles.contains(&Role::Hub) {
            tasks.spawn(access.clone().listen(cancel.clone().cancelled_owned()));
        }

        // Bound before the hub is built, because the hub advertises the bound address.
        let listener = if roles.contains(&Role::Api) || roles.contains(&Role::Hub) {
            let listener = tokio::net::TcpListener::bind(settings.server.bind)
                .await
                .with_context(|| format!("binding {}", settings.server.bind))?;
            Some(listener)
        } else {
            None
        };
        let address = listener.as_ref().map(|l| l.local_addr()).transpose()?;

        let hub = roles.contains(&Role::Hub).then(|| {
            let backend = StoreHubBackend {
                pool: pool.clone(),
                tokens: tokens.clone(),
                access: access.clone(),
                cache: cache.clone(),
                sessions: SessionAuthenticator {
                    pool: pool.clone(),
                    cache: cache.clone(),
                    access: access.clone(),
                    idle_ttl: settings.auth.browser_session_idle_ttl,
                },
                allowed_origins: settings.server.allowed_origins.clone(),
            };
            let cluster = address.map(|bound| hub_cluster(&settings.hub, cache.clone(), bound));
            Hub::with_cluster(Arc::new(backend), HubSettings::default(), cluster)
        });
        if let Some(hub) = &hub {
            let channel = settings.namespace.redis_key(HUB_CHANNEL);
            let redis_url = settings.redis.url.expose_secret().to_owned();
            let feed = HubFeed::new(pool.clone(), hub.clone(), redis_url, channel);
            tasks.spawn(feed.run(cancel.clone()));
        }

        if let Some(hub) = &hub {
            crate::presence::validate(&settings.presence).map_err(anyhow::Error::msg)?;
            let redis_url = settings.redis.url.expose_secret();
            crate::presence::start(
                hub,
                &pool,
                redis_url,
                &settings.namespace,
                &settings.presence,
                &mut tasks,
                &cancel,
            )
            .await;
            let enforce = crate::hub_access::enforce_access_changes(
                hub.clone(),
                access.clone(),
                pool.clone(),
                cancel.clone(),
            );
            tasks.spawn(enforce);
        }

        let mut router = Router::new();
        if roles.contains(&Role::Api) {
            let state = AppState {
                pool: pool.clone(),
                tokens,
                access: access.clone(),
                cache: cache.clone(),
                settings: settings.clone(),
                probes: Arc::new(broker_probes(&settings)?),
            };
            router = router.merge(tasklane_api::router(state));
        }
        if let Some(hub) = &hub {
            router = router.merge(hub.router());
        }
        if let Some(listener) = listener {
            let address = listener.local_addr()?;
            let shutdown = cancel.clone();
            tasks.spawn(async move {
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                // Without TCP_NODELAY, small hub frames wait on Nagle's algorithm.
                let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "could not set TCP_NODELAY");
                    }
                });
                let server = axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown.cancelled_owned());
                if let Err(error) = server.await {
                    tracing::error!(%error, "http server failed");
                }
            });
            tracing::info!(%address, "http server listening");
        }

        let topics = kafka_topics(&topology, settings.kafka.partitions);
        if roles.contains(&Role::Relay) && !roles.contains(&Role::Bulk) {
            let brokers = settings.kafka.brokers.clone();
            let (topics, cancel) = (topics.clone(), cancel.clone());
            tasks.spawn(async move {
                ensure_topics_until_ready(&brokers, &topics, &cancel).await;
            });
        }
        if roles.contains(&Role::Relay) {
            let producer = KafkaProducer::new(&settings.kafka.brokers)?;
            let destinations: Vec<Arc<dyn Destination>> = vec![
                Arc::new(RabbitDestination::new(
                    settings.rabbitmq.url.expose_secret().to_owned(),
                    topology.clone(),
                )),
                Arc::new(KafkaDestination::new(producer, topology.clone())),
                Arc::new(HubDestination::new(cache.clone(), pool.clone())),
            ];
            tasks.spawn(relay::run(
                pool.clone(),
                destinations,
                settings.relay.clone(),
                cancel.clone(),
            ));
        }
        if roles.contains(&Role::Bulk) {
            let worker = BulkWorker {
                pool: pool.clone(),
                cache: cache.clone(),
                source_zone: settings.import.source_zone,
                batch_size: settings.import.batch_size,
                retry_delay: settings.relay.retry_delay,
            };
            let brokers = settings.kafka.brokers.clone();
            let (group, topic) = (topology.bulk_group(), topology.bulk_operations());
            let cancel = cancel.clone();
            // The consumer subscribes only once its topic exists, so it never starts on an
            // error about a missing topic.
            tasks.spawn(async move {
                if !ensure_topics_until_ready(&brokers, &topics, &cancel).await {
                    return;
                }
                match KafkaConsumer::new(&brokers, &group, &topic) {
                    Ok(consumer) => worker.run(consumer, cancel).await,
                    Err(error) => tracing::error!(%error, "the bulk worker could not create its kafka consumer"),
                }
            });
        }
        if roles.contains(&Role::Notify) {
            let consumer = NotifyConsumer {
                pool: pool.clone(),
                rabbit_url: settings.rabbitmq.url.expose_secret().to_owned(),
                topology: topology.clone(),
                retry_delay: settings.relay.retry_delay,
            };
            tasks.spawn(consumer.run(cancel.clone()));
        }
        if roles.contains(&Role::Email) {
            let worker = EmailWorker {
                pool: pool.clone(),
                rabbit_url: settings.rabbitmq.url.expose_secret().to_owned(),
                topology: topology.clone(),
                retry_delay: settings.relay.retry_delay,
                settings: settings.mail.clone(),
            };
            tasks.spawn(worker.run(cancel.clone()));
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        tracing::info!(roles = names.join(","), "tasklane started");
        Ok(Self {
            address,
            hub,
            cancel,
            tasks,
            shutdown_grace: settings.server.shutdown_grace,
        })
    }

    /// Stops every role. Hub clients get a Close that lets them reconnect elsewhere, HTTP stops
    /// taking requests, and workers finish their current step. Whatever outlives the grace
    /// period is aborted.
    pub async fn stop(mut self) {
        tracing::info!("tasklane stopping");
        if let Some(hub) = &self.hub {
            hub.shutdown().await;
        }
        self.cancel.cancel();
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("roles did not stop within the grace period, aborting them");
            self.tasks.abort_all();
        }
        tracing::info!("tasklane stopped");
    }
}

/// Builds the broker checks that `/readyz` reports beside PostgreSQL and Redis.
fn broker_probes(settings: &Settings) -> anyhow::Result<Vec<Arc<dyn DependencyProbe>>> {
    let rabbit = RabbitProbe {
        url: settings.rabbitmq.url.expose_secret().to_owned(),
    };
    let kafka = KafkaProbe {
        producer: KafkaProducer::new(&settings.kafka.brokers)?,
    };
    Ok(vec![Arc::new(rabbit), Arc::new(kafka)])
}

/// Runs the roles until Ctrl-C or SIGTERM.
pub async fn run_until_signal(settings: Settings, roles: Vec<Role>) -> anyhow::Result<()> {
    let application = Application::start(settings, &roles).await?;
    wait_for_signal().await;
    application.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Lists the topics every Kafka role needs: (name, partitions, is the activity stream).
fn kafka_topics(topology: &Topology, partitions: i32) -> Vec<(String, i32, bool)> {
    vec![
        (topology.bulk_operations(), partitions, false),
        (topology.task_changes(), partitions, false),
        (topology.user_activity(), partitions, true),
    ]
}

/// Creates the Kafka topics, retrying until the broker responds; false when cancelled first.
async fn ensure_topics_until_ready(
    brokers: &str,
    topics: &[(String, i32, bool)],
    cancel: &CancellationToken,
) -> bool {
    let mut warned = false;
    loop {
        match kafka::ensure_topics(brokers, topics).await {
            Ok(()) => {
                tracing::info!("kafka topics ready");
                return true;
            }
            Err(error) if !warned => {
                tracing::warn!(%error, "kafka topics could not be created yet, retrying");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
