//! Time ranges (docs/gateway.md, "Ranges"): `GET /api/range` answers the tiles, the product,
//! category, price-band and age-group tables and a timeline for any stretch of event time,
//! summed from the projector's bucketed tables (migrations/V12) in one statement.
//!
//! A range is `last=15m` (`h`, `d`; or `all`), ending with the minute of the latest event, or
//! `from=`/`to=` (RFC 3339; `to` defaults to that same end). It is answered at minute grain
//! when it lies within the minute rows (`minute_retention` of event time), else at hour grain;
//! either way its bounds are rounded outwards to the grain and the reply names the bounds it
//! answered for, so every number can be checked against the log over exactly those.

mod query;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::drilldown::{BadRequest, time, unavailable};

/// The longest `last=` accepted: ten years.
const MAX_LAST: TimeDelta = TimeDelta::days(3650);
/// The most buckets a timeline is cut into.
const MAX_BUCKETS: i64 = 120;
/// Where timeline buckets are aligned: a Monday, midnight UTC (as `range/query.rs` bins them).
const BUCKET_ORIGIN: DateTime<Utc> = DateTime::from_timestamp_nanos(946_857_600_000_000_000);
/// Timeline bucket widths, narrowest first; a range takes the narrowest that gives at most
/// [`MAX_BUCKETS`] and is no finer than its grain.
const WIDTHS: [TimeDelta; 9] = [
    TimeDelta::minutes(1),
    TimeDelta::minutes(5),
    TimeDelta::minutes(15),
    TimeDelta::hours(1),
    TimeDelta::hours(3),
    TimeDelta::hours(6),
    TimeDelta::days(1),
    TimeDelta::days(7),
    TimeDelta::days(28),
];

/// The query string of `/api/range`, as text: parsed here so a bad value gets a message that
/// names it.
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    pub last: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What was asked for, before it meets the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// The last stretch of event time, ending with the latest event's minute.
    Last(TimeDelta),
    /// Everything projected.
    All,
    /// From a time to a time (or to the end of the latest event's minute).
    Between(DateTime<Utc>, Option<DateTime<Utc>>),
}

impl Spec {
    pub fn parse(q: &RangeQuery) -> Result<Spec, BadRequest> {
        let from = q.from.as_deref().map(|v| time("from", v)).transpose()?;
        let to = q.to.as_deref().map(|v| time("to", v)).transpose()?;
        match (q.last.as_deref(), from, to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(BadRequest(
                "last: give either last or from/to, not both".into(),
            )),
            (Some("all"), None, None) | (None, None, None) => Ok(Spec::All),
            (Some(last), None, None) => parse_last(last).map(Spec::Last),
            (None, None, Some(_)) => Err(BadRequest("from: needed when to is given".into())),
            (None, Some(from), to) => match to {
                Some(to) if to <= from => {
                    Err(BadRequest(format!("to: {to} is not after from ({from})")))
                }
                _ => Ok(Spec::Between(from, to)),
            },
        }
    }
}

fn parse_last(value: &str) -> Result<TimeDelta, BadRequest> {
    let bad = || {
        BadRequest(format!(
            "last: {value:?} is not a span such as 15m, 1h, 24h, 7d, 30d (up to 3650d) or all"
        ))
    };
    let unit = value.chars().last().ok_or_else(bad)?;
    let n: i64 = value[..value.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let span = match unit {
        'm' => TimeDelta::try_minutes(n),
        'h' => TimeDelta::try_hours(n),
        'd' => TimeDelta::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    if n < 1 || span > MAX_LAST {
        return Err(bad());
    }
    Ok(span)
}

/// The resolution of the buckets a range is summed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Minute,
    Hour,
}

impl Grain {
    pub fn name(self) -> &'static str {
        match self {
            Grain::Minute => "minute",
            Grain::Hour => "hour",
        }
    }

    fn step(self) -> TimeDelta {
        match self {
            Grain::Minute => TimeDelta::minutes(1),
            Grain::Hour => TimeDelta::hours(1),
        }
    }
}

/// What the analytics' clock says: the latest event, and where the minute rows begin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    pub watermark: Option<DateTime<Utc>>,
    /// Minute buckets at or after this are complete (the checkpoint's `minute_floor`).
    pub minute_cutoff: Option<DateTime<Utc>>,
    pub first_hour: Option<DateTime<Utc>>,
}

/// A range as answered: `[from, to)` on the grain, and the timeline's bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub grain: Grain,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: TimeDelta,
}

fn floor(t: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    t.duration_trunc(step).unwrap_or(t)
}

fn ceil(t: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let f = floor(t, step);
    if f == t { t } else { f + step }
}

impl Resolved {
    /// Meets `spec` with the clock; `now` stands in for the latest event when there is none.
    pub fn new(spec: Spec, clock: &Clock, now: DateTime<Utc>) -> Resolved {
        let minute = TimeDelta::minutes(1);
        let end = floor(clock.watermark.unwrap_or(now), minute) + minute;
        let (from, to) = match spec {
            Spec::Last(span) => (end - span, end),
            Spec::All => (clock.first_hour.unwrap_or(end - TimeDelta::hours(1)), end),
            Spec::Between(from, to) => (from, to.unwrap_or(end)),
        };
        let inside_minutes = clock
            .minute_cutoff
            .is_some_and(|cutoff| floor(from, minute) >= cutoff);
        let grain = if spec != Spec::All && inside_minutes {
            Grain::Minute
        } else {
            Grain::Hour
        };
        let (from, to) = (floor(from, grain.step()), ceil(to, grain.step()));
        // Buckets are aligned on BUCKET_ORIGIN, so the first may begin before `from`.
        let buckets = |w: TimeDelta| {
            let w = w.num_seconds();
            let start = (from - BUCKET_ORIGIN).num_seconds().div_euclid(w) * w;
            ((to - BUCKET_ORIGIN).num_seconds() - start + w - 1).div_euclid(w)
        };
        let bucket = WIDTHS
            .into_iter()
            .filter(|w| *w >= grain.step())
            .find(|w| buckets(*w) <= MAX_BUCKETS)
            .unwrap_or(WIDTHS[WIDTHS.len() - 1]);
        Resolved {
            grain,
            from,
            to,
            bucket,
        }
    }
}

/// Reads the clock, resolves `spec` against it and sums the range, in one snapshot.
pub async fn load(
    client: &mut tokio_postgres::Client,
    spec: Spec,
) -> Result<Value, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let value = query::answer(&tx, spec).await?;
    tx.commit().await?;
    Ok(value)
}

/// `GET /api/range`.
pub async fn range(State(pool): State<Pool>, Query(q): Query<RangeQuery>) -> Response {
    let spec = match Spec::parse(&q) {
        Ok(spec) => spec,
        Err(bad) => return bad.into_response(),
    };
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return unavailable(e),
    };
    match load(&mut client, spec).await {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => unavailable(e),
    }
}

/// The `range` member of a reply.
fn describe(spec: Spec, r: &Resolved, clock: &Clock) -> Value {
    json!({
        "from": r.from,
        "to": r.to,
        "grain": r.grain.name(),
        "bucket_seconds": r.bucket.num_seconds(),
        // A range that ends with the latest event moves with it; a dashboard refreshes it live.
        "ends_now": !matches!(spec, Spec::Between(_, Some(_))),
        "watermark": clock.watermark,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn q(last: Option<&str>, from: Option<&str>, to: Option<&str>) -> RangeQuery {
        RangeQuery {
            last: last.map(Into::into),
            from: from.map(Into::into),
            to: to.map(Into::into),
        }
    }

    #[test]
    fn specs_parse_and_bad_ones_name_their_parameter() {
        assert_eq!(
            Spec::parse(&q(Some("15m"), None, None)).unwrap(),
            Spec::Last(TimeDelta::minutes(15))
        );
        assert_eq!(Spec::parse(&q(None, None, None)).unwrap(), Spec::All);
        for (query, name) in [
            (q(Some("15x"), None, None), "last:"),
            (q(Some("0h"), None, None), "last:"),
            (q(Some("4000d"), None, None), "last:"),
            (q(Some("1h"), Some("2026-11-01T00:00:00Z"), None), "last:"),
            (q(None, Some("yesterday"), None), "from:"),
            (q(None, None, Some("2026-11-01T00:00:00Z")), "from:"),
            (
                q(
                    None,
                    Some("2026-11-02T00:00:00Z"),
                    Some("2026-11-01T00:00:00Z"),
                ),
                "to:",
            ),
        ] {
            let message = Spec::parse(&query).unwrap_err().0;
            assert!(message.starts_with(name), "{message}");
        }
    }

    #[test]
    fn ranges_inside_the_minute_rows_are_answered_by_the_minute() {
        let w = Utc.with_ymd_and_hms(2026, 11, 30, 12, 34, 56).unwrap();
        let clock = Clock {
            watermark: Some(w),
            minute_cutoff: Some(w - TimeDelta::hours(48)),
            first_hour: Some(Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()),
        };
        let r = Resolved::new(Spec::Last(TimeDelta::minutes(15)), &clock, w);
        assert_eq!(r.grain, Grain::Minute);
        assert_eq!(r.to, Utc.with_ymd_and_hms(2026, 11, 30, 12, 35, 0).unwrap());
        assert_eq!(r.to - r.from, TimeDelta::minutes(15));
        assert_eq!(r.bucket, TimeDelta::minutes(1));

        let week = Resolved::new(Spec::Last(TimeDelta::days(7)), &clock, w);
        assert_eq!(week.grain, Grain::Hour);
        assert_eq!(
            week.to,
            Utc.with_ymd_and_hms(2026, 11, 30, 13, 0, 0).unwrap()
        );
        assert!(week.bucket >= TimeDelta::hours(1));
        assert!((week.to - week.from).num_seconds() / week.bucket.num_seconds() <= MAX_BUCKETS);

        let all = Resolved::new(Spec::All, &clock, w);
        assert_eq!(
            (all.grain, all.from),
            (Grain::Hour, clock.first_hour.unwrap())
        );

        // Buckets aligned on the origin: ten hours ending off a five-minute boundary would be
        // 121 five-minute buckets, so they are fifteen.
        let off = w - TimeDelta::minutes(1);
        let ten = Resolved::new(
            Spec::Last(TimeDelta::hours(10)),
            &Clock {
                watermark: Some(off),
                ..clock
            },
            off,
        );
        assert_eq!(ten.bucket, TimeDelta::minutes(15));
        let on = Resolved::new(Spec::Last(TimeDelta::hours(10)), &clock, w);
        assert_eq!(
            on.bucket,
            TimeDelta::minutes(5),
            "ending on a boundary: 120 buckets"
        );
        assert_eq!(
            BUCKET_ORIGIN,
            Utc.with_ymd_and_hms(2000, 1, 3, 0, 0, 0).unwrap()
        );

        // Bounds off the grain are rounded outwards.
        let from = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 30).unwrap();
        let r = Resolved::new(
            Spec::Between(from, Some(from + TimeDelta::seconds(10))),
            &clock,
            w,
        );
        assert_eq!(
            (r.grain, r.to - r.from),
            (Grain::Minute, TimeDelta::minutes(1))
        );
    }
}
