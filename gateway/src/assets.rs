//! The dashboard page, its script and the charting library, compiled into the binary.

pub(crate) const INDEX_HTML: &str = include_str!("../static/index.html");
pub(crate) const DASHBOARD_JS: &str = include_str!("../static/dashboard.js");
/// Apache ECharts from npm (`web/package-lock.json`), installed by `build.rs`.
pub(crate) const ECHARTS_JS: &str = include_str!("../web/node_modules/echarts/dist/echarts.min.js");
