//! Services run as processes of their own, so that a test can kill one as a crash would
//! (SIGKILL: no shutdown path runs) and start it again.

use std::process::{Child, Command, Stdio};

use crate::any_port;

/// The flags of a projector on `database_url` (migrated already) that applies `chunk` events
/// per step and notices what it waits for within a fraction of a second.
pub fn projector_flags(database_url: &str, chunk: u32) -> Vec<String> {
    [
        "--database-url",
        database_url,
        "--chunk-events",
        &chunk.to_string(),
        "--skip-migrations",
        "--standby-poll-ms",
        "100",
        "--poll-ms",
        "200",
    ]
    .map(String::from)
    .to_vec()
}

/// A running service, killed and reaped when dropped.
#[derive(Debug)]
pub struct Service {
    child: Child,
    metrics: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Starts `program` (a `CARGO_BIN_EXE_…` path) with `args`, its metrics on a free port and
    /// its logs at `warn` on this test's stderr.
    pub async fn start(program: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> Service {
        let port = any_port().await.local_addr().expect("port").port();
        let metrics = format!("127.0.0.1:{port}");
        let child = Command::new(program)
            .args(args)
            .args(["--metrics-addr", &metrics])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        Service {
            child,
            metrics: format!("http://{metrics}/metrics"),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// The value of an unlabelled series on its /metrics, once the endpoint answers.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let body = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        body.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }
}
