//! Kafka through librdkafka: topic creation, a producer that waits for delivery, and a
//! consumer that commits only what the caller says is done.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;

use crate::BusError;

/// Header names carried on every record.
pub const HEADER_EVENT_TYPE: &str = "event_type";
pub const HEADER_SCHEMA_VERSION: &str = "schema_version";
pub const HEADER_MESSAGE_ID: &str = "message_id";

/// Seven days, the retention of the activity stream.
const ACTIVITY_RETENTION_MS: &str = "604800000";

fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "10000")
        .set("topic.metadata.refresh.interval.ms", "10000");
    config
}

/// Creates the topics when missing; an existing topic is left as it is.
pub async fn ensure_topics(brokers: &str, topics: &[(String, i32, bool)]) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = base_config(brokers).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions, is_activity)| {
            let topic = NewTopic::new(name, *partitions, TopicReplication::Fixed(1));
            if *is_activity {
                topic.set("retention.ms", ACTIVITY_RETENTION_MS)
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::Admin(format!("creating topic {topic}: {code}")))
            }
        }
    }
    Ok(())
}

/// A producer whose `send` returns once the broker has stored the record.
#[derive(Clone)]
pub struct KafkaProducer {
    producer: FutureProducer,
}

/// One record to send.
pub struct OutgoingRecord<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub payload: &'a [u8],
    pub event_type: &'a str,
    pub schema_version: u32,
    pub message_id: &'a str,
}

impl KafkaProducer {
    pub fn new(brokers: &str) -> Result<Self, BusError> {
        let producer = base_config(brokers)
            .set("acks", "all")
            .set("message.timeout.ms", "15000")
            .set("linger.ms", "5")
            .create()?;
        Ok(Self { producer })
    }

    /// Returns true when a broker returns cluster metadata within `timeout`.
    pub async fn broker_responds(&self, timeout: Duration) -> bool {
        let producer = self.producer.clone();
        // librdkafka's metadata call blocks its thread, so it runs off the async workers.
        let fetched =
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
                .await;
        matches!(fetched, Ok(Ok(_)))
    }

    pub async fn send(&self, record: OutgoingRecord<'_>) -> Result<(), BusError> {
        let schema_version = record.schema_version.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_EVENT_TYPE,
                value: Some(record.event_type),
            })
            .insert(Header {
                key: HEADER_SCHEMA_VERSION,
                value: Some(schema_version.as_str()),
            })
            .insert(Header {
                key: HEADER_MESSAGE_ID,
                value: Some(record.message_id),
            });
        let future_record = FutureRecord::to(record.topic)
            .key(record.key)
            .payload(record.payload)
            .headers(headers);
        self.producer
            .send(future_record, Duration::from_secs(15))
            .await
            .map(|_| ())
            .map_err(|(error, _)| BusError::Kafka(error))
    }
}

/// A consumer in a group that never commits on its own.
pub struct KafkaConsumer {
    consumer: StreamConsumer,
}

impl KafkaConsumer {
    pub fn new(brokers: &str, group: &str, topic: &str) -> Result<Self, BusError> {
        let consumer: StreamConsumer = base_config(brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()?;
        consumer.subscribe(&[topic])?;
        Ok(Self { consumer })
    }

    /// Waits for the next record and returns its payload and a handle to commit it with.
    pub async fn next(&self) -> Result<(Vec<u8>, CommitHandle), BusError> {
        let message = self.consumer.recv().await?;
        let payload = message.payload().unwrap_or_default().to_vec();
        let handle = CommitHandle {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        };
        Ok((payload, handle))
    }

    /// Commits the offset after `handle`'s record, once its work is durable.
    pub fn commit(&self, handle: &CommitHandle) -> Result<(), BusError> {
        let mut offsets = rdkafka::TopicPartitionList::new();
        offsets.add_partition_offset(
            &handle.topic,
            handle.partition,
            rdkafka::Offset::Offset(handle.offset + 1),
        )?;
        self.consumer.commit(&offsets, CommitMode::Sync)?;
        Ok(())
    }
}

/// Position of a consumed record, for committing it later.
#[derive(Debug, Clone)]
pub struct CommitHandle {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}
