//! The cartflow gateway: the live window onto the analytics.
//!
//! One port serves the dashboard (`/`), every analytic as JSON (`/api/snapshot`), the
//! WebSocket feed (`/ws`), `/healthz` and `/metrics`. It only reads: PostgreSQL (the
//! projector's views, refreshed on its NOTIFY) and the cart-events topic (the live feed).
//!
//! - [`snapshot`] reads the analytics in one statement;
//! - [`hub`] finds what changed, serialises and frames each update once and hands it to the
//!   [`writers`] (a task per core), keeping the latest deltas in a [`history`] for clients
//!   that resume;
//! - [`analytics`] and [`feed`] feed the hub, coalesced per tick;
//! - [`changes`] marks the timeline's minutes whose abandonment rate left its usual range;
//! - [`drilldown`] serves the raw events behind a number (`/api/events`, `/api/carts/{key}`);
//! - [`range`] answers the same analytics for any stretch of event time (`/api/range`);
//! - [`auth`] is the token layer on `/api/*` and `/ws`, and the Origin rule;
//! - [`ws`] checks the rest of a handshake and runs each client (its queue, pings, limits).

pub mod analytics;
mod assets;
pub mod auth;
pub mod changes;
pub mod config;
pub mod drilldown;
mod error;
pub mod feed;
pub mod history;
pub mod hub;
mod listener;
pub mod metrics;
mod pace;
pub mod range;
mod server;
pub mod snapshot;
mod state;
pub mod writers;
pub mod ws;

pub use config::Config;
pub use error::Error;
pub use server::{Gateway, run};
