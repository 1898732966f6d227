//! Message brokers: Kafka for jobs and streams, RabbitMQ for critical events.
//!
//! Names come from [`Topology`], which puts every topic, exchange and queue under the
//! configured prefix.

pub mod kafka;
pub mod rabbit;
pub mod topology;

pub use topology::Topology;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("rabbitmq: {0}")]
    Rabbit(#[from] lapin::Error),
    #[error("rabbitmq did not confirm the message")]
    NotConfirmed,
    #[error("kafka admin: {0}")]
    Admin(String),
}
