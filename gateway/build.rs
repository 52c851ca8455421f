//! Installs the dashboard's charting library from npm (pinned by `web/package-lock.json`)
//! when it is missing, so `include_str!` can bundle it into the binary: the dashboard works
//! offline and never loads code from a CDN.

use std::path::Path;
use std::process::Command;

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/node_modules/echarts/dist/echarts.min.js");
    if web
        .join("node_modules/echarts/dist/echarts.min.js")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`npm ci` in {} failed ({s}); it installs the dashboard's charting library",
            web.display()
        ),
        Err(e) => panic!(
            "cannot run npm ({e}): building the gateway needs Node.js and npm once, to install \
             the dashboard's charting library into {} (apt-get install nodejs npm)",
            web.display()
        ),
    }
}
