//! A PostgreSQL URL, parsed once where it enters the program (the `--database-url` flag or
//! `DATABASE_URL`, or a test) into `tokio_postgres::Config`, and shown without its password.

use std::fmt;
use std::str::FromStr;

use tokio_postgres::Config;
use tokio_postgres::config::Host;

use crate::Error;

/// A parsed PostgreSQL URL.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: Config,
}

impl DatabaseUrl {
    /// The connection settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database it names (`postgres` when it names none).
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// The whole connection, password included, as libpq key-value settings
    /// (`host=… port=… user=… password=… dbname=…`), which `--database-url` also accepts:
    /// for handing to another process. Never log it.
    pub fn connection_string(&self) -> String {
        let c = &self.config;
        let mut parts = Vec::new();
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        if !hosts.is_empty() {
            parts.push(format!("host={}", quote(&hosts.join(","))));
        }
        let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
        if !ports.is_empty() {
            parts.push(format!("port={}", ports.join(",")));
        }
        if let Some(user) = c.get_user() {
            parts.push(format!("user={}", quote(user)));
        }
        if let Some(password) = c.get_password() {
            parts.push(format!(
                "password={}",
                quote(&String::from_utf8_lossy(password))
            ));
        }
        parts.push(format!("dbname={}", quote(self.dbname())));
        if let Some(options) = c.get_options() {
            parts.push(format!("options={}", quote(options)));
        }
        parts.join(" ")
    }

    /// The same server and credentials, another database.
    pub fn with_dbname(&self, name: &str) -> DatabaseUrl {
        let mut config = self.config.clone();
        config.dbname(name);
        DatabaseUrl { config }
    }
}

impl FromStr for DatabaseUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        url.parse::<Config>()
            .map(|config| DatabaseUrl { config })
            .map_err(|e| Error::DatabaseUrl {
                url: without_password(url),
                reason: e.to_string(),
            })
    }
}

/// `postgres://user@host:port/dbname`: never the password.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.write_str("postgres://")?;
        if let Some(user) = c.get_user() {
            write!(f, "{user}@")?;
        }
        for (i, host) in c.get_hosts().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                Host::Tcp(h) => f.write_str(h)?,
                Host::Unix(path) => write!(f, "{}", path.display())?,
            }
            if let Some(port) = c.get_ports().get(i).or(c.get_ports().first()) {
                write!(f, ":{port}")?;
            }
        }
        write!(f, "/{}", self.dbname())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A key-value setting's value, single-quoted with `\` and `'` escaped.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// For the one message about a URL that does not parse (so has no `Config` to show).
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DatabaseUrl {
        s.parse().expect("a valid URL")
    }

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            url("postgres://postgres@127.0.0.1:5432/cartflow")
                .with_dbname("x")
                .to_string(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        let other = url("postgres://u:p@h/db?sslmode=disable").with_dbname("x");
        assert_eq!(other.dbname(), "x");
        assert_eq!(
            other.config().get_password(),
            Some(&b"p"[..]),
            "credentials kept"
        );
        assert_eq!(url("postgres://h").with_dbname("x").dbname(), "x");
    }

    #[test]
    fn the_connection_string_is_the_same_connection() {
        let u = url("postgres://app:s3%20%27x@db.local:6543/cartflow?options=-c%20jit%3Doff");
        let again: DatabaseUrl = u.connection_string().parse().expect("key-value form");
        assert_eq!(again.to_string(), "postgres://app@db.local:6543/cartflow");
        assert_eq!(again.config().get_password(), Some(&b"s3 'x"[..]));
        assert_eq!(again.config().get_options(), Some("-c jit=off"));
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/cartflow").to_string(),
            "postgres://app@db:5432/cartflow"
        );
        assert_eq!(
            url("postgres://postgres@127.0.0.1/cartflow").to_string(),
            "postgres://postgres@127.0.0.1:5432/cartflow"
        );
        let bad = "postgres://app:s3cret@db:notaport/x"
            .parse::<DatabaseUrl>()
            .expect_err("bad port");
        assert!(!bad.to_string().contains("s3cret"), "{bad}");
        assert!(
            bad.to_string().contains("not a valid PostgreSQL URL"),
            "{bad}"
        );
    }
}
