//! Where the bench programs find the services: the same environment variables as the test
//! suites, with the loopback servers of `scripts/services.sh` as defaults.

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// `SWITCHYARD_TEST_POSTGRES_URL`, default the loopback server, database `test`.
pub fn postgres_url() -> String {
    env_or(
        "SWITCHYARD_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
    )
}

/// `SWITCHYARD_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    env_or("SWITCHYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// A multiplexed connection to the Redis server at [`redis_url`].
pub async fn redis_connection() -> redis::RedisResult<redis::aio::ConnectionManager> {
    redis::aio::ConnectionManager::new(redis::Client::open(redis_url().as_str())?).await
}

/// `SWITCHYARD_TEST_AMQP_URL`, default the loopback broker as `guest`.
pub fn amqp_url() -> String {
    env_or(
        "SWITCHYARD_TEST_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    )
}

/// `SWITCHYARD_TEST_SQS_ENDPOINT`, default `http://127.0.0.1:4577`.
pub fn sqs_endpoint() -> String {
    env_or("SWITCHYARD_TEST_SQS_ENDPOINT", "http://127.0.0.1:4577")
}
