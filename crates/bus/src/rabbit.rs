//! RabbitMQ: the `task.events` topic exchange, its durable queues (quorum by default) with dead-letter
//! queues, a publisher that waits for confirms, and a consumer with manual acks.

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use crate::topology::QUEUE_BINDINGS;
use crate::{BusError, Topology};

/// Opens a connection to RabbitMQ.
pub async fn connect(url: &str) -> Result<Connection, BusError> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    Ok(connection)
}

/// Returns true when RabbitMQ completes a connection handshake within `timeout`.
pub async fn broker_responds(url: &str, timeout: std::time::Duration) -> bool {
    match tokio::time::timeout(timeout, connect(url)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close(200, "readiness check").await;
            true
        }
        _ => false,
    }
}

/// Declares the exchange, every queue with its dead-letter queue, and their bindings.
pub async fn declare_topology(channel: &Channel, topology: &Topology) -> Result<(), BusError> {
    let exchange = topology.events_exchange();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            &exchange,
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    for (queue, routing_keys) in QUEUE_BINDINGS {
        let queue = topology.name(queue);
        let dead_letters = format!("{queue}.dlq");
        declare_queue(channel, topology, &dead_letters, FieldTable::default()).await?;

        let mut arguments = FieldTable::default();
        // Rejected messages go through the default exchange straight to the dead-letter queue.
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead_letters.as_str().into()),
        );
        declare_queue(channel, topology, &queue, arguments).await?;
        for key in *routing_keys {
            channel
                .queue_bind(
                    &queue,
                    &exchange,
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok(())
}

async fn declare_queue(
    channel: &Channel,
    topology: &Topology,
    name: &str,
    mut arguments: FieldTable,
) -> Result<(), BusError> {
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(topology.queue_type().into()),
    );
    if let Some(expires) = topology.queue_expires() {
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(expires.as_millis() as i64),
        );
    }
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(name, options, arguments).await?;
    Ok(())
}

/// Publishes persistent messages and waits for the broker's confirm of each.
pub struct RabbitPublisher {
    channel: Channel,
    exchange: String,
}

impl RabbitPublisher {
    pub async fn new(connection: &Connection, topology: &Topology) -> Result<Self, BusError> {
        let channel = connection.create_channel().await?;
        declare_topology(&channel, topology).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            exchange: topology.events_exchange(),
        })
    }

    pub async fn publish(
        &self,
        routing_key: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        headers.insert(
            "schema_version".into(),
            AMQPValue::LongLongInt(tasklane_domain::envelope::SCHEMA_VERSION as i64),
        );
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(message_id))
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_headers(headers);
        let confirm = self
            .channel
            .basic_publish(
                &self.exchange,
                routing_key,
                BasicPublishOptions::default(),
                payload,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(_) => Ok(()),
            _ => Err(BusError::NotConfirmed),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.channel.status().connected()
    }
}

/// Starts consuming a queue with manual acks and at most `prefetch` unacknowledged messages.
pub async fn consume(
    connection: &Connection,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> Result<(Channel, Consumer), BusError> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue,
            tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

/// Acknowledges a delivery once its effects are committed.
pub async fn ack(delivery: &lapin::message::Delivery) -> Result<(), BusError> {
    delivery.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// Rejects a delivery without requeueing, which sends it to the queue's dead-letter queue.
pub async fn dead_letter(delivery: &lapin::message::Delivery) -> Result<(), BusError> {
    delivery
        .nack(BasicNackOptions {
            requeue: false,
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// Returns a delivery to the queue for another attempt.
pub async fn requeue(delivery: &lapin::message::Delivery) -> Result<(), BusError> {
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await?;
    Ok(())
}
