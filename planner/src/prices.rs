//! The price table (`planner/data/prices.toml`, kept as data with the date
//! its prices were read) and the cost of a run's requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The prices the estimate uses.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Prices {
    /// When the prices were read.
    pub date: String,
    /// Their region.
    pub region: String,
    /// USD per million requests, by item.
    pub usd_per_million: BTreeMap<String, f64>,
    /// USD per GB-second of Lambda compute, by architecture.
    pub usd_per_gb_second: BTreeMap<String, f64>,
}

impl Prices {
    /// The table shipped with fleetcert.
    pub fn bundled() -> Prices {
        toml::from_str(include_str!("../data/prices.toml"))
            .unwrap_or_else(|e| panic!("planner/data/prices.toml does not parse: {e}"))
    }

    /// USD per million of `item` (0 when the table has no such item).
    pub fn per_million(&self, item: &str) -> f64 {
        self.usd_per_million.get(item).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_table_parses_and_is_dated() {
        let p = Prices::bundled();
        assert!(p.date.len() == 10 && p.date.starts_with("20"), "{}", p.date);
        assert!(p.per_million("lambda_request") > 0.0);
        assert!(p.usd_per_gb_second["arm64"] > 0.0);
    }
}
