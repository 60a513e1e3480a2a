//! TLS (`amqps://`) in the stock build: the URL is accepted from configuration alone, and
//! pointed at the test broker's plain port it fails with an error that says the broker did not
//! answer in TLS and which port to use.

use switchyard::Config;
use switchyard_core::ErrorKind;

/// The test broker's host and plain port, from `SWITCHYARD_TEST_AMQP_URL`.
fn plain_authority() -> String {
    let url = std::env::var("SWITCHYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    rest.split_once('/').map_or(rest, |(a, _)| a).to_string()
}

/// `queue = "amqps://…"` passes the configuration's checks (with `?cacertfile=` too), and
/// connecting it to a plain AMQP port is a `Config` error naming the URL without its password,
/// what went wrong and the TLS port.
#[tokio::test]
async fn amqps_is_accepted_and_a_plain_port_is_named() {
    let dir = std::env::temp_dir().join(format!("switchyard-amqps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let authority = plain_authority();
    for queue in [
        format!("amqps://{authority}/%2f"),
        format!("amqps://{authority}/%2f?cacertfile={}", ca.display()),
    ] {
        let config = Config {
            storage: format!("sqlite://{}", dir.join("jobs.db").display()),
            queue: queue.clone(),
            prefix: switchyard_conformance::random_prefix(),
            ..Config::default()
        };
        config.validate().expect("amqps:// is a supported queue");
        let e = switchyard::connect::connect_queue(&config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{queue} connected to a plain port"));
        assert_eq!(e.kind(), ErrorKind::Config, "{queue}: {e}");
        let msg = e.message();
        assert!(msg.contains("did not answer in TLS"), "{msg}");
        assert!(msg.contains("5671"), "{msg}");
        if authority.contains(':') && authority.contains('@') {
            let (user, _) = authority.split_once(':').unwrap();
            assert!(msg.contains(&format!("{user}:***@")), "{msg}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
