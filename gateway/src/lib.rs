//! The cartflow gateway: the window onto the analytics.
//!
//! One port serves the dashboard page (`/`), the snapshot API (`/api/snapshot`), `/healthz`
//! and `/metrics`. It only reads PostgreSQL.
//!
//! This is the service's frame with a first snapshot (raw-log counts and revenue) and a page
//! that polls it; the WebSocket feed and the full dashboard are built on it by the gateway
//! issue.

pub mod config;
mod error;
mod server;
pub mod snapshot;

pub use config::Config;
pub use error::Error;
pub use server::{router, run};
