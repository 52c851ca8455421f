//! A client for a Confluent-compatible schema registry's REST API (Confluent's, Redpanda's,
//! Apicurio's `ccompat`, Karapace): register a schema under a subject, set a subject's
//! compatibility, fetch a schema by id. What the ids mean to the contract is the codec's
//! business (`cartflow_schemas::Codec::learn`); this module only speaks HTTP.

mod lookup;

use std::time::Duration;

use serde::Deserialize;

pub use self::lookup::{Lookup, SchemaLookup};
use crate::Error;

/// The registry API's media type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Every request's deadline: a registry that does not answer in this long is unreachable.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The subject a topic's values are registered under (Confluent's TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// A subject's compatibility rule: which new schemas the registry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    /// A new schema must read data written with the previous one (fields may be added with a
    /// default, or removed).
    Backward,
}

impl Compatibility {
    const fn as_str(self) -> &'static str {
        match self {
            Compatibility::Backward => "BACKWARD",
        }
    }
}

/// One registry, by the base URL of its Confluent API (`http://host:8081` for Confluent's and
/// Redpanda's, `http://host:8080/apis/ccompat/v6` for Apicurio's).
#[derive(Debug, Clone)]
pub struct Registry {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaText {
    schema: String,
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    error_code: i64,
    #[serde(default)]
    message: String,
}

impl Registry {
    pub fn new(base: &str) -> Result<Registry, Error> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|source| Error::RegistryUnreachable {
                url: base.to_owned(),
                source,
            })?;
        Ok(Registry {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Registers `schema` (Avro schema JSON) under `subject`; returns its id. Registering a
    /// schema already there returns the id it has.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, Error> {
        let body = serde_json::json!({ "schema": schema }).to_string();
        let request = self
            .http
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .body(body.clone());
        match self.send(request).await {
            Ok(response) => Ok(self.read::<Registered>(response).await?.id),
            // A conflict is either a schema the subject's compatibility refuses or, with
            // Apicurio, a registration that raced another one for the same subject ("already
            // exists"): if the subject now holds the schema, that is its id.
            Err(refused @ Error::RegistryRefused { status: 409, .. }) => {
                let lookup = self
                    .http
                    .post(format!("{}/subjects/{subject}", self.base))
                    .body(body);
                match self.send(lookup).await {
                    Ok(response) => Ok(self.read::<Registered>(response).await?.id),
                    Err(_) => Err(refused),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Sets `subject`'s compatibility rule (a subject not registered yet may be configured).
    pub async fn set_compatibility(
        &self,
        subject: &str,
        compatibility: Compatibility,
    ) -> Result<(), Error> {
        let body = serde_json::json!({ "compatibility": compatibility.as_str() });
        self.send(
            self.http
                .put(format!("{}/config/{subject}", self.base))
                .body(body.to_string()),
        )
        .await?;
        Ok(())
    }

    /// The schema JSON registered under `id`; `None` when the registry says it has no such id.
    pub async fn schema(&self, id: u32) -> Result<Option<String>, Error> {
        let request = self.http.get(format!("{}/schemas/ids/{id}", self.base));
        match self.send(request).await {
            Ok(response) => Ok(Some(self.read::<SchemaText>(response).await?.schema)),
            Err(Error::RegistryRefused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a request; a status other than 2xx comes back as `RegistryRefused` with the
    /// registry's own message.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let response = request
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|source| Error::RegistryUnreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let refusal = serde_json::from_str::<Refusal>(&text).unwrap_or(Refusal {
            error_code: 0,
            message: text,
        });
        Err(Error::RegistryRefused {
            url: self.base.clone(),
            status: status.as_u16(),
            error_code: refusal.error_code,
            message: refusal.message,
        })
    }

    async fn read<T: for<'de> Deserialize<'de>>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, Error> {
        let text = response
            .text()
            .await
            .map_err(|source| Error::RegistryUnreachable {
                url: self.base.clone(),
                source,
            })?;
        serde_json::from_str(&text).map_err(|e| Error::RegistryRefused {
            url: self.base.clone(),
            status: 200,
            error_code: 0,
            message: format!("an answer that is not the registry API's ({e}): {text}"),
        })
    }
}
