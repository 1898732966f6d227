//! Readiness checks of the message brokers, reported by `/readyz` as degraded when down.

use std::time::Duration;

use tasklane_api::DependencyProbe;
use tasklane_bus::kafka::KafkaProducer;

/// Time each broker gets to respond; `/readyz` bounds the whole check as well.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

pub struct RabbitProbe {
    pub url: String,
}

#[async_trait::async_trait]
impl DependencyProbe for RabbitProbe {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    async fn is_up(&self) -> bool {
        tasklane_bus::rabbit::broker_responds(&self.url, PROBE_TIMEOUT).await
    }
}

pub struct KafkaProbe {
    pub producer: KafkaProducer,
}

#[async_trait::async_trait]
impl DependencyProbe for KafkaProbe {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn is_up(&self) -> bool {
        self.producer.broker_responds(PROBE_TIMEOUT).await
    }
}
