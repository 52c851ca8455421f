//! Live changes on the timeline (#16): a settled minute whose abandonment rate over the 15
//! minutes ending there differs from the usual rate of its hour of day by more than
//! `--change-share` is marked, in the snapshot the dashboard draws and in the metrics an
//! alert reads. The rates come from `v_timeline_recent` (migration V10, which says what
//! "settled" and "usual" mean); the share is the gateway's, so it is applied here.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::metrics::Metrics;

/// Marks the `timeline` rows of a snapshot and counts the newly marked minutes.
#[derive(Debug)]
pub struct Changes {
    share: f64,
    /// The latest settled minute already counted: a minute is counted once.
    counted_to: Option<DateTime<Utc>>,
}

impl Changes {
    pub fn new(share: f64) -> Self {
        Changes {
            share,
            counted_to: None,
        }
    }

    /// Adds `change` (recent ÷ usual − 1, for settled minutes) and `marked` to every row of
    /// `data["timeline"]`, counts newly settled marked minutes, and sets the change gauge to
    /// the latest settled minute's.
    pub fn mark(&mut self, data: &mut Map<String, Value>, metrics: &Metrics) {
        let Some(Value::Array(rows)) = data.get_mut("timeline") else {
            return;
        };
        let mut latest = None;
        let counted_to = self.counted_to;
        for row in rows.iter_mut().filter_map(Value::as_object_mut) {
            let change = change(row);
            let marked = change.is_some_and(|c| c.abs() > self.share);
            row.insert("change".into(), change.map_or(Value::Null, Value::from));
            row.insert("marked".into(), Value::Bool(marked));
            let Some(c) = change else { continue };
            let Some(bucket) = bucket(row) else { continue };
            if counted_to.is_none_or(|t| bucket > t) {
                if marked {
                    let direction = if c > 0.0 { "up" } else { "down" };
                    metrics.changes.with_label_values(&[direction]).inc();
                }
                self.counted_to = self.counted_to.max(Some(bucket));
            }
            if latest.is_none_or(|(t, _)| bucket > t) {
                latest = Some((bucket, c));
            }
        }
        if let Some((_, c)) = latest {
            metrics.change.set(c);
        }
    }
}

fn number(row: &Map<String, Value>, key: &str) -> Option<f64> {
    row.get(key).and_then(Value::as_f64)
}

/// recent ÷ usual − 1, when the minute is settled and both rates are known.
fn change(row: &Map<String, Value>) -> Option<f64> {
    if row.get("settled") != Some(&Value::Bool(true)) {
        return None;
    }
    let (recent, usual) = (number(row, "recent_rate")?, number(row, "usual_rate")?);
    (usual > 0.0).then(|| recent / usual - 1.0)
}

fn bucket(row: &Map<String, Value>) -> Option<DateTime<Utc>> {
    let text = row.get("bucket")?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot(rows: Value) -> Map<String, Value> {
        json!({ "timeline": rows }).as_object().unwrap().clone()
    }

    fn row(minute: u32, settled: bool, recent: f64) -> Value {
        json!({"bucket": format!("2026-11-30T10:{minute:02}:00+00:00"), "settled": settled,
               "recent_rate": recent, "usual_rate": 0.5})
    }

    #[test]
    fn marks_settled_minutes_beyond_the_share_and_counts_each_once() {
        let metrics = Metrics::new(&prometheus::Registry::new());
        let mut changes = Changes::new(0.2);
        let mut data = snapshot(json!([
            row(0, true, 0.5),
            row(1, true, 0.7),
            row(2, false, 0.9)
        ]));
        changes.mark(&mut data, &metrics);
        let marked: Vec<bool> = data["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["marked"].as_bool().unwrap())
            .collect();
        assert_eq!(
            marked,
            [false, true, false],
            "0.7 is 40% above 0.5; minute 2 is not settled"
        );
        assert_eq!(metrics.changes.with_label_values(&["up"]).get(), 1);
        assert!((metrics.change.get() - 0.4).abs() < 1e-9);
        // The same minutes again, and one more settled and lower.
        let mut data = snapshot(json!([row(1, true, 0.7), row(2, true, 0.3)]));
        changes.mark(&mut data, &metrics);
        assert_eq!(metrics.changes.with_label_values(&["up"]).get(), 1);
        assert_eq!(metrics.changes.with_label_values(&["down"]).get(), 1);
    }
}
