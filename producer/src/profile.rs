//! The shopper profile: every parameter of the simulation, read from TOML.
//!
//! The shipped default is `producer/profiles/default.toml`; `--profile FILE` replaces it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The shipped default profile.
pub const DEFAULT_TOML: &str = include_str!("../profiles/default.toml");

/// The analytics' age groups, youngest first, with their lower bounds.
pub const AGE_GROUPS: [(&str, i32); 7] = [
    ("0-17", 0),
    ("18-24", 18),
    ("25-34", 25),
    ("35-44", 35),
    ("45-54", 45),
    ("55-64", 55),
    ("65+", 65),
];

/// Index into [`AGE_GROUPS`] of an age.
pub fn age_group(age: i32) -> usize {
    AGE_GROUPS
        .iter()
        .rposition(|(_, lo)| age >= *lo)
        .unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub traffic: Traffic,
    pub session: Session,
    pub conversion: Conversion,
    pub products: Products,
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    pub sessions_per_hour: f64,
    pub hour_weights: Vec<f64>,
    pub weekday_weights: Vec<f64>,
    pub month_weights: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub mean_adds: f64,
    pub max_adds: u32,
    pub mean_gap_seconds: f64,
    pub remove_base: f64,
    pub remove_per_100: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Conversion {
    pub base: f64,
    pub per_100_of_cart: f64,
    pub evening_hours: Vec<u32>,
    pub evening: f64,
    pub weekend: f64,
    pub holiday_months: Vec<u32>,
    pub holiday: f64,
    #[serde(default)]
    pub category: BTreeMap<String, f64>,
    #[serde(default)]
    pub age_group: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Products {
    #[serde(default)]
    pub category_weights: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    pub share: f64,
    pub visits: f64,
    pub basket: f64,
    pub conversion: f64,
}

impl Default for Profile {
    fn default() -> Self {
        Profile::parse(DEFAULT_TOML).expect("the shipped profile is valid (a unit test checks)")
    }
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Profile(format!("cannot read {}: {e}", path.display())))?;
        Profile::parse(&text).map_err(|e| Error::Profile(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Profile, Error> {
        let profile: Profile = toml::from_str(text).map_err(|e| Error::Profile(e.to_string()))?;
        profile.validate()?;
        Ok(profile)
    }

    fn validate(&self) -> Result<(), Error> {
        let t = &self.traffic;
        let weights = |name: &str, w: &[f64], len: usize| {
            if w.len() != len {
                return Err(Error::Profile(format!(
                    "traffic.{name} needs {len} values, has {}",
                    w.len()
                )));
            }
            if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().all(|x| *x == 0.0) {
                return Err(Error::Profile(format!(
                    "traffic.{name} must be non-negative and not all zero"
                )));
            }
            Ok(())
        };
        weights("hour_weights", &t.hour_weights, 24)?;
        weights("weekday_weights", &t.weekday_weights, 7)?;
        weights("month_weights", &t.month_weights, 12)?;
        if !(t.sessions_per_hour.is_finite() && t.sessions_per_hour > 0.0) {
            return Err(Error::Profile(
                "traffic.sessions_per_hour must be positive".into(),
            ));
        }
        let s = &self.session;
        if !(s.mean_adds >= 1.0 && s.max_adds >= 1 && s.mean_gap_seconds > 0.0) {
            return Err(Error::Profile(
                "session.mean_adds must be at least 1, max_adds at least 1, mean_gap_seconds positive".into(),
            ));
        }
        if !(0.0..=1.0).contains(&s.remove_base) || s.remove_per_100 < 0.0 {
            return Err(Error::Profile(
                "session.remove_base must be within 0..=1 and remove_per_100 non-negative".into(),
            ));
        }
        if self.tiers.is_empty()
            || self
                .tiers
                .iter()
                .any(|t| t.share < 0.0 || t.visits <= 0.0 || t.basket <= 0.0)
        {
            return Err(Error::Profile(
                "tiers need a non-negative share, positive visits and basket".into(),
            ));
        }
        if self.tiers.iter().all(|t| t.share == 0.0) {
            return Err(Error::Profile(
                "tiers: at least one share must be positive".into(),
            ));
        }
        for group in self.conversion.age_group.keys() {
            if !AGE_GROUPS.iter().any(|(g, _)| g == group) {
                return Err(Error::Profile(format!(
                    "conversion.age_group: unknown group {group:?}"
                )));
            }
        }
        Ok(())
    }

    pub fn category_effect(&self, category: &str) -> f64 {
        self.conversion
            .category
            .get(category)
            .copied()
            .unwrap_or(0.0)
    }

    pub fn category_weight(&self, category: &str) -> f64 {
        self.products
            .category_weights
            .get(category)
            .copied()
            .unwrap_or(1.0)
    }

    pub fn age_effect(&self, group: usize) -> f64 {
        self.conversion
            .age_group
            .get(AGE_GROUPS[group].0)
            .copied()
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_profile_parses() {
        let p = Profile::parse(DEFAULT_TOML).unwrap();
        assert_eq!(p.tiers.len(), 3);
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let short = DEFAULT_TOML.replace(
            "weekday_weights = [0.92, 0.90, 0.94, 1.00, 1.08, 1.30, 1.24]",
            "weekday_weights = [1.0]",
        );
        let err = Profile::parse(&short).unwrap_err().to_string();
        assert!(err.contains("weekday_weights needs 7 values"), "{err}");
        let typo = DEFAULT_TOML.replace("mean_adds", "mean_ads");
        assert!(Profile::parse(&typo).is_err());
    }

    #[test]
    fn age_groups() {
        assert_eq!(AGE_GROUPS[age_group(17)].0, "0-17");
        assert_eq!(AGE_GROUPS[age_group(18)].0, "18-24");
        assert_eq!(AGE_GROUPS[age_group(64)].0, "55-64");
        assert_eq!(AGE_GROUPS[age_group(120)].0, "65+");
    }
}
