//! Reading the configuration: file (if any) → environment → validation, with every problem
//! reported at once. The binary exits 64 (EX_USAGE) on any problem, before binding a port.

use std::path::Path;

use tollgate_core::config::{Config, ConfigProblem};
use tollgate_core::pricing::PriceTable;

/// Exit status for an unusable configuration (sysexits' EX_USAGE, as linkerd2-proxy uses).
pub const EXIT_CONFIG: i32 = 64;

/// Loads defaults, then the file, then the process environment. Does not validate.
pub fn load(path: Option<&Path>) -> Result<Config, Vec<ConfigProblem>> {
    let mut config = match path {
        None => Config::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                vec![ConfigProblem {
                    field: "--config".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                }]
            })?;
            Config::from_toml(&text).map_err(|mut p| {
                p.field = format!("{} ({})", path.display(), p.field);
                vec![p]
            })?
        }
    };
    config.apply_env(|name| std::env::var(name).ok());
    Ok(config)
}

/// Everything `serve` needs to be right: the pure checks plus the files that must exist.
pub fn validate_for_serve(config: &Config) -> Vec<ConfigProblem> {
    let mut problems = config.validate();
    let files = [
        ("tls.cert_file", config.tls.cert_file.as_deref()),
        ("tls.key_file", config.tls.key_file.as_deref()),
        ("upstream.ca_file", config.upstream.ca_file.as_deref()),
        ("pricing.file", config.pricing.file.as_deref()),
    ];
    for (field, path) in files {
        if let Some(path) = path.filter(|p| !Path::new(p).is_file()) {
            problems.push(ConfigProblem {
                field: field.into(),
                message: format!("'{path}' is not a readable file"),
            });
        }
    }
    if let Err(price_problems) = load_prices(config) {
        problems.extend(price_problems);
    }
    problems
}

/// The price table shipped with this release (`config/prices.toml`).
pub const BUILTIN_PRICES: &str = include_str!("../../../config/prices.toml");

/// Loads and validates the price table: `pricing.file`, else the shipped one.
pub fn load_prices(config: &Config) -> Result<PriceTable, Vec<ConfigProblem>> {
    let (text, origin) = match &config.pricing.file {
        None => (BUILTIN_PRICES.to_string(), "built-in prices".to_string()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                vec![ConfigProblem {
                    field: "pricing.file".into(),
                    message: format!("cannot read {path}: {e}"),
                }]
            })?;
            (text, path.clone())
        }
    };
    PriceTable::from_toml(&text).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| ConfigProblem {
                field: format!("{origin}: {}", p.field),
                message: p.message,
            })
            .collect()
    })
}

/// Prints the problems to stderr in one block.
pub fn report(problems: &[ConfigProblem]) {
    eprintln!(
        "tollgate: the configuration has {} problem(s):",
        problems.len()
    );
    for p in problems {
        eprintln!("  - {p}");
    }
    eprintln!("See config/tollgate.example.toml for every setting and its environment variable.");
}
