//! The server's settings, read once from the environment; a bad value is an error naming the
//! variable, never a silent default.

use std::{
    env,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

/// Where the server listens when neither `STRATA_ADDR` nor `PORT` says otherwise: loopback
/// only, so a development server is not reachable from the network by accident.
const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DEFAULT_PORT: u16 = 3000;
const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
const DEFAULT_SIGN_INS_PER_MINUTE: u64 = 10;

/// Everything the environment configures.
#[derive(Clone, Debug)]
pub struct Config {
    /// `STRATA_ADDR` (+ `PORT`).
    pub addr: SocketAddr,
    /// `STRATA_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `STRATA_REDIS_URL`, or `STRATA_REDIS_SENTINELS` + `STRATA_REDIS_MASTER`.
    pub redis: Option<RedisTarget>,
    /// `STRATA_REPLICATED=1`.
    pub replicated: bool,
    /// `STRATA_SESSION_IDLE_SECS`.
    pub idle: Duration,
    /// `STRATA_SECURE_COOKIE=1`.
    pub secure_cookie: bool,
    /// `STRATA_SIGN_IN_LIMIT`: sign-ins per client address per minute.
    pub sign_ins_per_minute: u64,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Config, String> {
        Ok(Config {
            addr: listen_addr(var("STRATA_ADDR"), var("PORT"))?,
            data_dir: var("STRATA_DATA_DIR").map_or_else(|| "./strata-data".into(), Into::into),
            redis: redis_target(
                var("STRATA_REDIS_URL"),
                var("STRATA_REDIS_SENTINELS"),
                var("STRATA_REDIS_MASTER"),
            )?,
            replicated: flag("STRATA_REPLICATED")?,
            idle: positive("STRATA_SESSION_IDLE_SECS")?.map_or(DEFAULT_IDLE, Duration::from_secs),
            secure_cookie: flag("STRATA_SECURE_COOKIE")?,
            sign_ins_per_minute: positive("STRATA_SIGN_IN_LIMIT")?
                .unwrap_or(DEFAULT_SIGN_INS_PER_MINUTE),
        })
    }
}

/// Where Redis is. Not `Debug` through its fields: the URLs may hold passwords.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server (`STRATA_REDIS_URL`).
    Url(String),
    /// The master the sentinels name (`STRATA_REDIS_SENTINELS`, `STRATA_REDIS_MASTER`),
    /// followed through failovers.
    Sentinel {
        /// The sentinels' URLs.
        sentinels: Vec<String>,
        /// The name they monitor the master under.
        master: String,
    },
}

impl RedisTarget {
    /// For banners, logs and errors: without passwords.
    pub fn describe(&self) -> String {
        match self {
            RedisTarget::Url(url) => strata::redact_url(url),
            RedisTarget::Sentinel { sentinels, master } => {
                let redacted: Vec<String> =
                    sentinels.iter().map(|u| strata::redact_url(u)).collect();
                format!("master {master:?} via sentinels {}", redacted.join(", "))
            }
        }
    }

    /// Every URL, to scrub from the text of an error that might quote one.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn urls(&self) -> Vec<&str> {
        match self {
            RedisTarget::Url(url) => vec![url.as_str()],
            RedisTarget::Sentinel { sentinels, .. } => {
                sentinels.iter().map(String::as_str).collect()
            }
        }
    }
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Redis from one URL, or from sentinels and a master name; both, or half of Sentinel, is an
/// error that says what to set.
fn redis_target(
    url: Option<String>,
    sentinels: Option<String>,
    master: Option<String>,
) -> Result<Option<RedisTarget>, String> {
    match (url, sentinels, master) {
        (None, None, None) => Ok(None),
        (Some(url), None, None) => Ok(Some(RedisTarget::Url(url))),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(
            "set either STRATA_REDIS_URL (one server) or STRATA_REDIS_SENTINELS and \
             STRATA_REDIS_MASTER (Sentinel), not both"
                .into(),
        ),
        (None, Some(_), None) => Err(
            "STRATA_REDIS_SENTINELS needs STRATA_REDIS_MASTER: the name the sentinels monitor \
             (`sentinel monitor <name> ...`, often mymaster)"
                .into(),
        ),
        (None, None, Some(_)) => Err(
            "STRATA_REDIS_MASTER needs STRATA_REDIS_SENTINELS: the sentinels' URLs, \
             comma-separated (redis://127.0.0.1:26379,redis://127.0.0.1:26380)"
                .into(),
        ),
        (None, Some(list), Some(master)) => {
            let sentinels: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            if sentinels.is_empty() {
                return Err(
                    "STRATA_REDIS_SENTINELS lists no URL: give redis://host:port,...".into(),
                );
            }
            Ok(Some(RedisTarget::Sentinel { sentinels, master }))
        }
    }
}

/// A variable's value; unset and empty are the same.
fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

/// `1` is on, `0` or unset is off, anything else an error.
fn flag(name: &str) -> Result<bool, String> {
    match var(name).as_deref() {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(format!("{name}={other:?}: use 1 (on) or 0 (off)")),
    }
}

fn positive(name: &str) -> Result<Option<u64>, String> {
    let Some(value) = var(name) else {
        return Ok(None);
    };
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!("{name}={value:?} is not a positive whole number")),
    }
}

/// `STRATA_ADDR` is a full address (`0.0.0.0:8080`) or a host (`0.0.0.0`, `::1`); `PORT` gives
/// the port when `STRATA_ADDR` does not.
fn listen_addr(addr: Option<String>, port: Option<String>) -> Result<SocketAddr, String> {
    let port = match port {
        Some(p) => p
            .parse()
            .map_err(|_| format!("PORT={p:?} is not a port number (0-65535)"))?,
        None => DEFAULT_PORT,
    };
    let Some(addr) = addr else {
        return Ok(SocketAddr::new(DEFAULT_HOST, port));
    };
    if let Ok(full) = addr.parse::<SocketAddr>() {
        return Ok(full);
    }
    addr.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .map(|host| SocketAddr::new(host, port))
        .map_err(|_| {
            format!(
                "STRATA_ADDR={addr:?} is neither an address (127.0.0.1:3000) nor a host (0.0.0.0)"
            )
        })
}
