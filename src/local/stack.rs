//! Where the local stack lives and listens: [`StackConfig`], from the environment.

use std::ffi::OsString;
use std::path::PathBuf;

/// Default DynamoDB Local port: the one every AWS example uses.
pub const DEFAULT_DYNAMODB_PORT: u16 = 8000;
/// Default Kafka port.
pub const DEFAULT_KAFKA_PORT: u16 = 9092;

/// Where the local stack lives and listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// Install and run directory (see the module docs for its layout).
    pub home: PathBuf,
    /// DynamoDB Local's port on 127.0.0.1.
    pub dynamodb_port: u16,
    /// The Kafka broker's port on 127.0.0.1.
    pub kafka_port: u16,
}

impl StackConfig {
    /// Reads the configuration from the environment.
    ///
    /// home = `$RAFFLE_OUTBOX_HOME`, else `$XDG_CACHE_HOME/raffle-outbox`, else
    /// `~/.cache/raffle-outbox`. It is a cache on purpose: everything in it can be
    /// re-installed, and it is shared by every checkout of the project on the machine, so the
    /// 15-minute tansu build happens once per machine, not once per clone.
    ///
    /// ports: `$DYNAMODB_LOCAL_PORT` (default 8000), `$KAFKA_PORT` (default 9092). A value that
    /// is not a port number is ignored with a warning rather than failing, because this
    /// constructor cannot fail and a wrong port shows up clearly at `up` anyway.
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var_os(key))
    }

    /// [`StackConfig::from_env`] with the environment passed in, so it can be unit-tested
    /// without mutating the process environment (which is racy across test threads).
    fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Self {
        StackConfig {
            home: home_from(&get),
            dynamodb_port: port_from(&get, "DYNAMODB_LOCAL_PORT", DEFAULT_DYNAMODB_PORT),
            kafka_port: port_from(&get, "KAFKA_PORT", DEFAULT_KAFKA_PORT),
        }
    }

    /// The endpoint to give the AWS SDK (`AWS_ENDPOINT_URL_DYNAMODB`), e.g.
    /// `http://127.0.0.1:8000`. The same endpoint serves the Streams API.
    pub fn dynamodb_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.dynamodb_port)
    }

    /// The Kafka bootstrap address, e.g. `127.0.0.1:9092`.
    pub fn kafka_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// Directory for pid files, logs and the broker's working directory.
    pub fn run_dir(&self) -> PathBuf {
        self.home.join("run")
    }
}

fn home_from(get: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    // An empty variable counts as unset (the usual shell convention). XDG_CACHE_HOME must be
    // absolute to be used, as the XDG Base Directory spec says.
    let non_empty = |key: &str| get(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = non_empty("RAFFLE_OUTBOX_HOME") {
        return home;
    }
    if let Some(cache) = non_empty("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return cache.join("raffle-outbox");
    }
    if let Some(user_home) = non_empty("HOME") {
        return user_home.join(".cache").join("raffle-outbox");
    }
    // No HOME at all (some minimal containers): still somewhere outside the repository.
    std::env::temp_dir().join("raffle-outbox")
}

fn port_from(get: &impl Fn(&str) -> Option<OsString>, key: &str, default: u16) -> u16 {
    let Some(raw) = get(key) else { return default };
    match raw.to_str().and_then(|s| s.trim().parse::<u16>().ok()) {
        Some(port) if port != 0 => port,
        _ => {
            tracing::warn!(variable = key, value = ?raw, default, "not a port number, using the default");
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg_with(vars: &[(&str, &str)]) -> StackConfig {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        StackConfig::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn home_prefers_raffle_outbox_home() {
        let cfg = cfg_with(&[
            ("RAFFLE_OUTBOX_HOME", "/opt/ro"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(cfg.home, PathBuf::from("/opt/ro"));
    }

    #[test]
    fn home_falls_back_to_xdg_cache_then_home() {
        let cfg = cfg_with(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(cfg.home, PathBuf::from("/xdg/raffle-outbox"));
        let cfg = cfg_with(&[("HOME", "/home/u")]);
        assert_eq!(cfg.home, PathBuf::from("/home/u/.cache/raffle-outbox"));
    }

    #[test]
    fn empty_or_relative_values_are_ignored() {
        let cfg = cfg_with(&[
            ("RAFFLE_OUTBOX_HOME", ""),
            ("XDG_CACHE_HOME", "relative/cache"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(cfg.home, PathBuf::from("/home/u/.cache/raffle-outbox"));
    }

    #[test]
    fn no_home_at_all_still_leaves_the_repository_alone() {
        let cfg = cfg_with(&[]);
        assert_eq!(cfg.home, std::env::temp_dir().join("raffle-outbox"));
    }

    #[test]
    fn ports_default_and_override() {
        let cfg = cfg_with(&[("HOME", "/h")]);
        assert_eq!((cfg.dynamodb_port, cfg.kafka_port), (8000, 9092));
        assert_eq!(cfg.dynamodb_endpoint(), "http://127.0.0.1:8000");
        assert_eq!(cfg.kafka_bootstrap(), "127.0.0.1:9092");

        let cfg = cfg_with(&[("DYNAMODB_LOCAL_PORT", "18000"), ("KAFKA_PORT", " 19092 ")]);
        assert_eq!((cfg.dynamodb_port, cfg.kafka_port), (18000, 19092));
        assert_eq!(cfg.dynamodb_endpoint(), "http://127.0.0.1:18000");
        assert_eq!(cfg.kafka_bootstrap(), "127.0.0.1:19092");
    }

    #[test]
    fn bad_ports_fall_back_to_defaults() {
        let cfg = cfg_with(&[("DYNAMODB_LOCAL_PORT", "eight"), ("KAFKA_PORT", "0")]);
        assert_eq!((cfg.dynamodb_port, cfg.kafka_port), (8000, 9092));
        let cfg = cfg_with(&[("KAFKA_PORT", "70000")]);
        assert_eq!(cfg.kafka_port, 9092);
    }

    #[test]
    fn run_dir_is_under_home() {
        let cfg = cfg_with(&[("RAFFLE_OUTBOX_HOME", "/x")]);
        assert_eq!(cfg.run_dir(), PathBuf::from("/x/run"));
    }
}
