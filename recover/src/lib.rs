//! `cartflow-recover`: an example of a service acting on cart outcomes, the way a shop would
//! hook in a mailer or a coupon service. It reads `cart-outcomes` in its own consumer group
//! and, for every abandoned cart worth at least `--min-value`, prints a recovery message as a
//! JSON line or POSTs it to `--webhook-url`.
//!
//! Delivery to the webhook is at least once: an offset is stored only after the webhook
//! accepted the message (a 2xx), and a failing webhook is retried with back-off; stored
//! offsets are committed every second and at a clean stop, so a restart after a crash may
//! repeat the last second's messages. The message carries the outcome's `outcome_id`,
//! the same for every delivery of one outcome: the receiver de-duplicates by it.

mod config;
mod error;
mod message;
mod run;

pub use config::Config;
pub use error::Error;
pub use message::Recovery;
pub use run::run;
