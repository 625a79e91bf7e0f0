//! Behind a reverse proxy: only requests whose TCP peer is a trusted proxy are taken at the
//! address their `Forwarded` / `X-Forwarded-For` headers name, so clients behind the proxy
//! get their own rate-limit buckets and grant budgets, while the same headers from anyone
//! else change nothing.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use streamr_coord::{CoordConfig, Coordinator, RateLimit};
use tower::ServiceExt;

async fn status(router: &axum::Router, peer: &str, headers: &[(&str, &str)]) -> StatusCode {
    let peer: IpAddr = peer.parse().unwrap();
    let mut request = Request::builder()
        .uri("/healthz")
        .extension(axum::extract::ConnectInfo(SocketAddr::new(peer, 40_000)));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn forwarded_clients_get_their_own_rate_limit_only_through_a_trusted_proxy() {
    let storage = streamr_coord::connect("sqlite::memory:").await.unwrap();
    let config = CoordConfig {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 2,
        }),
        trusted_proxies: "10.0.0.0/8".parse().unwrap(),
        ..CoordConfig::default()
    };
    let router = Coordinator::new(config, storage).router();
    let proxy = "10.0.0.2";
    // Two clients behind the proxy: two buckets of 2.
    for client in ["198.51.100.1", "198.51.100.2"] {
        let xff = [("x-forwarded-for", client)];
        assert_eq!(status(&router, proxy, &xff).await, StatusCode::OK);
        assert_eq!(status(&router, proxy, &xff).await, StatusCode::OK);
        assert_eq!(
            status(&router, proxy, &xff).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{client} has its own bucket, and it is spent"
        );
    }
    let forwarded = [("forwarded", "for=\"[2001:db8::7]:4711\"")];
    assert_eq!(status(&router, proxy, &forwarded).await, StatusCode::OK);
    // A client that prepends a fake address is still counted at its real one.
    let prepended = [("x-forwarded-for", "203.0.113.50, 198.51.100.1")];
    assert_eq!(
        status(&router, proxy, &prepended).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // An untrusted peer's headers are ignored: it spends its own bucket whatever it claims.
    let direct = "192.0.2.9";
    for fake in ["198.51.100.10", "198.51.100.11"] {
        assert_eq!(
            status(&router, direct, &[("x-forwarded-for", fake)]).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        status(&router, direct, &[("x-forwarded-for", "198.51.100.12")]).await,
        StatusCode::TOO_MANY_REQUESTS,
        "spoofed headers do not buy a fresh bucket"
    );
}
