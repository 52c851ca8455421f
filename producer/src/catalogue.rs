//! The product catalogue: the FakeStore API, validated, or a generated fallback.

use std::str::FromStr;
use std::time::Duration;

use cartflow_common::retry::Backoff;
use cartflow_schemas::{Money, Product, Rating};
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;
use crate::metrics::Metrics;

/// A FakeStore catalogue is about 10 KiB; anything past this is not a catalogue.
const MAX_BODY_BYTES: usize = 1024 * 1024;
const ATTEMPTS: u32 = 3;

/// Where the catalogue came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Fetched,
    Fallback,
}

/// Fetches the catalogue from `url`, falling back to [`fallback`] with a log line when it
/// cannot be had. Never fails.
pub async fn load(url: &str, timeout: Duration, metrics: &Metrics) -> (Vec<Product>, Source) {
    match fetch(url, timeout, metrics).await {
        Ok(products) => {
            info!(url, products = products.len(), "Loaded the catalogue.");
            metrics
                .catalogue_fetch
                .with_label_values(&["fetched"])
                .inc();
            (products, Source::Fetched)
        }
        Err(e) => {
            warn!(url, error = %e, "Using the generated offline catalogue instead.");
            metrics
                .catalogue_fetch
                .with_label_values(&["fallback"])
                .inc();
            (fallback(), Source::Fallback)
        }
    }
}

/// Fetches and validates the catalogue, with a few retries and backoff.
pub async fn fetch(url: &str, timeout: Duration, metrics: &Metrics) -> Result<Vec<Product>, Error> {
    let client = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .timeout(timeout)
        .user_agent(concat!("cartflow-producer/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Catalogue(format!("HTTP client: {e}")))?;
    let mut last = None;
    let mut backoff = Backoff::new(Duration::from_millis(400), Duration::from_secs(2));
    // The fetch happens before the producer serves anything; its few seconds of retries are
    // not interrupted by a stop signal.
    let never = CancellationToken::new();
    for attempt in 1..=ATTEMPTS {
        match fetch_once(&client, url).await {
            Ok(body) => return parse(&body, metrics),
            Err(e) => {
                warn!(url, attempt, error = %e, "Catalogue fetch failed.");
                last = Some(e);
            }
        }
        if attempt < ATTEMPTS {
            backoff.wait(&never).await;
        }
    }
    Err(last.unwrap_or_else(|| Error::Catalogue("no attempt made".into())))
}

async fn fetch_once(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, Error> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| Error::Catalogue(format!("request failed: {e}")))?;
    if !response.status().is_success() {
        return Err(Error::Catalogue(format!(
            "HTTP status {}",
            response.status()
        )));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(Error::Catalogue(format!(
            "body larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::Catalogue(format!("reading the body: {e}")))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Error::Catalogue(format!(
                "body larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a FakeStore-shaped array. Invalid entries are skipped and counted; an array with no
/// valid entry is an error.
pub fn parse(body: &[u8], metrics: &Metrics) -> Result<Vec<Product>, Error> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| Error::Catalogue(format!("body is not JSON: {e}")))?;
    let Value::Array(items) = json else {
        return Err(Error::Catalogue("body is not a JSON array".into()));
    };
    let now = Utc::now();
    let mut products = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match product(item, now) {
            Ok(p) => products.push(p),
            Err(reason) => {
                warn!(index = i, reason, "Skipping an invalid catalogue entry.");
                metrics.catalogue_skipped.inc();
            }
        }
    }
    if products.is_empty() {
        return Err(Error::Catalogue(format!(
            "no valid product among {} entries",
            items.len()
        )));
    }
    Ok(products)
}

fn product(item: &Value, now: DateTime<Utc>) -> Result<Product, String> {
    let id = item["id"].as_i64().ok_or("id is not an integer")?;
    let title = item["title"].as_str().unwrap_or_default().trim();
    let category = item["category"].as_str().unwrap_or_default().trim();
    let price = match &item["price"] {
        // The number's own text, so 109.95 stays 109.95 and 695 stays 695.
        Value::Number(n) => Decimal::from_str(&n.to_string()).map_err(|e| e.to_string())?,
        _ => return Err("price is not a number".into()),
    };
    let price = Money::try_from(price.round_dp(2)).map_err(|e| e.to_string())?;
    let product = Product {
        product_id: id,
        title: title.to_owned(),
        price,
        description: item["description"].as_str().unwrap_or_default().to_owned(),
        image_url: item["image"].as_str().unwrap_or_default().to_owned(),
        category: category.to_owned(),
        rating: Rating {
            rate: item["rating"]["rate"].as_f64().unwrap_or(0.0),
            count: item["rating"]["count"]
                .as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(0),
        },
        created_at: now,
    };
    product.validate().map_err(|e| e.to_string())?;
    Ok(product)
}

/// The offline catalogue: category, title and price in cents, modelled on FakeStore's 20.
const FALLBACK: [(&str, &str, i64); 20] = [
    (
        "men's clothing",
        "Fjallraven Foldsack No. 1 Backpack",
        10_995,
    ),
    (
        "men's clothing",
        "Mens Casual Premium Slim Fit T-Shirts",
        2_230,
    ),
    ("men's clothing", "Mens Cotton Jacket", 5_599),
    ("men's clothing", "Mens Casual Slim Fit", 1_599),
    ("men's clothing", "Leather Weekend Duffel", 8_900),
    (
        "jewelery",
        "Legends Naga Gold & Silver Dragon Station Chain Bracelet",
        69_500,
    ),
    ("jewelery", "Solid Gold Petite Micropave", 16_800),
    ("jewelery", "White Gold Plated Princess Ring", 999),
    (
        "jewelery",
        "Rose Gold Plated Double Flared Tunnel Plug Earrings",
        1_099,
    ),
    ("jewelery", "Sterling Silver Pendant Necklace", 4_500),
    (
        "electronics",
        "WD 2TB Elements Portable External Hard Drive",
        6_400,
    ),
    ("electronics", "SanDisk SSD PLUS 1TB Internal SSD", 10_900),
    ("electronics", "Silicon Power 256GB SSD 3D NAND", 10_900),
    (
        "electronics",
        "WD 4TB Gaming Drive for Playstation 4",
        11_400,
    ),
    (
        "electronics",
        "Samsung 49-Inch CHG90 144Hz Curved Gaming Monitor",
        99_999,
    ),
    (
        "women's clothing",
        "BIYLACLESEN Women's 3-in-1 Snowboard Jacket",
        5_699,
    ),
    (
        "women's clothing",
        "Lock and Love Women's Removable Hooded Jacket",
        2_999,
    ),
    (
        "women's clothing",
        "Rain Jacket Women Windbreaker Striped Climbing Raincoat",
        3_999,
    ),
    (
        "women's clothing",
        "MBJ Women's Solid Short Sleeve Boat Neck V",
        985,
    ),
    (
        "women's clothing",
        "Opna Women's Short Sleeve Moisture",
        795,
    ),
];

/// A deterministic catalogue in FakeStore's four categories, for when the API is out of reach.
pub fn fallback() -> Vec<Product> {
    let created = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    FALLBACK
        .iter()
        .zip(1i64..)
        .map(|(&(category, title, cents), id)| Product {
            product_id: id,
            title: title.to_owned(),
            price: Money::from_cents(cents),
            description: format!("{title} (offline catalogue)"),
            image_url: String::new(),
            category: category.to_owned(),
            rating: Rating {
                rate: 2.5 + (id % 5) as f64 * 0.5,
                count: (100 + id * 37 % 400) as i32,
            },
            created_at: created,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(&prometheus::Registry::new())
    }

    #[test]
    fn whole_number_prices_and_rates_parse() {
        let body = br#"[{"id":5,"title":"Bracelet","price":695,"description":"d","category":"jewelery","image":"i","rating":{"rate":3,"count":400}}]"#;
        let p = parse(body, &metrics()).unwrap();
        assert_eq!(p[0].price, Money::from_cents(69_500));
        assert_eq!(p[0].rating.rate, 3.0);
    }

    #[test]
    fn invalid_entries_are_skipped_and_counted() {
        let m = metrics();
        let body = br#"[
            {"id":1,"title":"Backpack","price":109.95,"category":"men's clothing"},
            {"id":2,"title":"","price":22.3,"category":"men's clothing"},
            {"id":3,"title":"Free","price":0,"category":"jewelery"},
            {"id":4,"title":"No category","price":3},
            {"id":"5","title":"Bad id","price":3,"category":"x"},
            {"id":6,"title":"String price","price":"3.00","category":"x"}
        ]"#;
        let p = parse(body, &m).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].price.to_string(), "109.95");
        assert_eq!(m.catalogue_skipped.get(), 5);
    }

    #[test]
    fn bad_bodies_are_errors() {
        let m = metrics();
        assert!(parse(b"not json", &m).is_err());
        assert!(parse(b"{}", &m).is_err());
        assert!(parse(b"[]", &m).is_err());
    }

    #[test]
    fn fallback_has_the_four_categories() {
        let products = fallback();
        assert_eq!(products.len(), 20);
        let mut categories: Vec<_> = products.iter().map(|p| p.category.as_str()).collect();
        categories.sort_unstable();
        categories.dedup();
        assert_eq!(categories.len(), 4);
        assert!(products.iter().all(|p| p.validate().is_ok()));
    }
}
