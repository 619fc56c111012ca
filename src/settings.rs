//! Configuration layering: built-in defaults < config file < environment < flags.

use std::path::Path;

use crate::Config;
use toml::Value;

/// The annotated default configuration, as shipped in `config.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config.toml");

/// Environment variables that set config keys: `NODO_<SECTION>__<KEY>`.
const ENV_PREFIX: &str = "NODO_";

/// Loads defaults, then the file (if any), then the environment.
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, String> {
    let mut value = Value::try_from(Config::default()).map_err(|e| e.to_string())?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        // Parsing into the typed config first gives errors that name the key and line.
        toml::from_str::<Config>(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let file_value: Value =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        merge(&mut value, file_value);
    }
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        // `NODO_<SECTION>__<KEY>`, or a top-level key such as `NODO_DEV`; other
        // NODO_ variables (NODO_CONFIG, tooling's own) are not config keys.
        let top_level_key = path.len() == 1 && value.get(&path[0]).is_some_and(|v| !v.is_table());
        if path.len() < 2 && !top_level_key {
            continue;
        }
        set_path(&mut value, &path, parse_scalar(v))?;
    }
    let mut config: Config = value
        .try_into()
        .map_err(|e: toml::de::Error| format!("invalid configuration: {}", e.message()))?;
    if let Some((_, keys)) = env.iter().find(|(k, _)| k == "LIVEKIT_KEYS") {
        for (k, s) in parse_keys(keys)? {
            config.keys.insert(k, s);
        }
    }
    let api_key = env.iter().find(|(k, _)| k == "LIVEKIT_API_KEY");
    let api_secret = env.iter().find(|(k, _)| k == "LIVEKIT_API_SECRET");
    if let (Some((_, k)), Some((_, s))) = (api_key, api_secret) {
        config.keys.insert(k.clone(), s.clone());
    }
    Ok(config)
}

/// Parses `"key1: secret1, key2: secret2"` (also newline-separated).
pub fn parse_keys(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once(':')
                .ok_or_else(|| format!("keys must look like \"key: secret\", got {pair:?}"))?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() {
                return Err(format!("keys must look like \"key: secret\", got {pair:?}"));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn parse_scalar(v: &str) -> Value {
    // Accept TOML syntax (numbers, booleans, arrays); fall back to a plain string.
    toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(v.to_string()))
}

fn set_path(root: &mut Value, path: &[String], v: Value) -> Result<(), String> {
    let mut cur = root;
    for (i, key) in path.iter().enumerate() {
        let table = cur
            .as_table_mut()
            .ok_or_else(|| format!("{} is not a section", path[..i].join(".")))?;
        if i == path.len() - 1 {
            // Arrays may be given as a single comma-separated string.
            let v = match (table.get(key), v) {
                (Some(Value::Array(_)), Value::String(s)) => Value::Array(
                    s.split(',')
                        .map(|x| Value::String(x.trim().to_string()))
                        .collect(),
                ),
                (_, v) => v,
            };
            table.insert(key.clone(), v);
            return Ok(());
        }
        cur = table
            .entry(key.clone())
            .or_insert_with(|| Value::Table(Default::default()));
    }
    Ok(())
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_matches_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).expect("config.toml parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn layering_order() {
        let dir = std::env::temp_dir().join(format!("nodo-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[server]\nhttp_port = 9000\n[room]\nempty_timeout = 10\n",
        )
        .expect("write");
        let env = vec![
            ("NODO_ROOM__EMPTY_TIMEOUT".to_string(), "42".to_string()),
            (
                "NODO_RTC__NODE_IP".to_string(),
                "10.0.0.1,10.0.0.2".to_string(),
            ),
            ("LIVEKIT_KEYS".to_string(), "k1: s1, k2: s2".to_string()),
        ];
        let c = load(Some(&file), &env).expect("load");
        assert_eq!(c.server.http_port, 9000);
        assert_eq!(c.room.empty_timeout, 42);
        assert_eq!(c.rtc.node_ip.len(), 2);
        assert_eq!(c.keys.get("k2").map(String::as_str), Some("s2"));
        assert_eq!(c.room.departure_timeout, 20);
    }

    #[test]
    fn bad_input_is_explained() {
        let env = vec![("NODO_ROOM__EMPTY_TIMEOUT".to_string(), "soon".to_string())];
        assert!(load(None, &env)
            .unwrap_err()
            .contains("invalid configuration"));
        assert!(parse_keys("nokey").is_err());
        let env = vec![("NODO_BOGUS__X".to_string(), "1".to_string())];
        assert!(load(None, &env).is_err());
        // Unrelated NODO_ variables are not config keys.
        let env = vec![
            ("NODO_CONFIG".to_string(), "x".to_string()),
            ("NODO_BIN".to_string(), "y".to_string()),
        ];
        assert!(load(None, &env).is_ok());
        let env = vec![("NODO_DEV".to_string(), "true".to_string())];
        assert!(load(None, &env).expect("dev").dev);
    }
}
