//! The catalogue's failure cases, each served by a real local HTTP server: a clear error and
//! the offline fallback, never a crash.

use std::time::Duration;

use cartflow_producer::catalogue::{self, Source};
use cartflow_producer::metrics::Metrics;

async fn serve(status: u16, body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = axum::http::StatusCode::from_u16(status).unwrap();
    let app = axum::Router::new().route(
        "/products",
        axum::routing::get(move || {
            let body = body.clone();
            async move { (status, [("content-type", "application/json")], body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/products")
}

async fn fetch(status: u16, body: &[u8]) -> (Result<usize, String>, Source, Metrics) {
    let url = serve(status, body.to_vec()).await;
    let metrics = Metrics::new(&prometheus::Registry::new());
    let fetched = catalogue::fetch(&url, Duration::from_secs(2), &metrics)
        .await
        .map(|p| p.len())
        .map_err(|e| e.to_string());
    let (_, source) = catalogue::load(&url, Duration::from_secs(2), &metrics).await;
    (fetched, source, metrics)
}

#[tokio::test]
async fn a_fakestore_payload_is_fetched() {
    let body = include_bytes!("../../tests/fixtures/fakestore-products.json");
    let (fetched, source, metrics) = fetch(200, body).await;
    assert_eq!(fetched, Ok(20));
    assert_eq!(source, Source::Fetched);
    assert_eq!(
        metrics
            .catalogue_fetch
            .with_label_values(&["fetched"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_server_error_falls_back() {
    let (fetched, source, metrics) = fetch(500, b"oops").await;
    assert!(fetched.unwrap_err().contains("HTTP status 500"));
    assert_eq!(source, Source::Fallback);
    assert_eq!(
        metrics
            .catalogue_fetch
            .with_label_values(&["fallback"])
            .get(),
        1
    );
}

#[tokio::test]
async fn invalid_json_falls_back() {
    let (fetched, source, _) = fetch(200, b"[{\"id\": 1,").await;
    assert!(fetched.unwrap_err().contains("not JSON"));
    assert_eq!(source, Source::Fallback);
}

#[tokio::test]
async fn wrong_types_fall_back() {
    let (fetched, source, metrics) = fetch(
        200,
        br#"[{"id": "one", "title": 5, "price": "cheap", "category": []}]"#,
    )
    .await;
    assert!(fetched.unwrap_err().contains("no valid product"));
    assert_eq!(source, Source::Fallback);
    assert!(metrics.catalogue_skipped.get() >= 1);
}

#[tokio::test]
async fn an_empty_list_falls_back() {
    let (fetched, source, _) = fetch(200, b"[]").await;
    assert!(fetched.unwrap_err().contains("no valid product among 0"));
    assert_eq!(source, Source::Fallback);
}

#[tokio::test]
async fn an_oversized_body_falls_back() {
    let mut body = b"[".to_vec();
    body.extend(std::iter::repeat_n(b' ', 2 * 1024 * 1024));
    body.push(b']');
    let (fetched, source, _) = fetch(200, &body).await;
    assert!(fetched.unwrap_err().contains("larger than"));
    assert_eq!(source, Source::Fallback);
}

#[tokio::test]
async fn an_unreachable_api_falls_back() {
    let metrics = Metrics::new(&prometheus::Registry::new());
    let (products, source) = catalogue::load(
        "http://127.0.0.1:1/products",
        Duration::from_secs(1),
        &metrics,
    )
    .await;
    assert_eq!(source, Source::Fallback);
    assert_eq!(products, catalogue::fallback());
}
