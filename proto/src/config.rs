//! Configuration files (siaga.toml, collector.toml, …) read with errors that
//! name the file, the line and the key.

use std::path::{Path, PathBuf};

/// A configuration or data file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {error}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file was read but something in it is wrong: the file, the line
    /// (1-based) and the key say where.
    #[error("{}:{line}: {}{message}", file.display(), key_prefix(key))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending entry.
        line: usize,
        /// Dotted key path of the offending entry (e.g. `device.parent`), empty
        /// when the error concerns the file's syntax as a whole.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

/// `path` if absolute, else `base/path`.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Parses TOML text, turning a parse error into one naming file, line and key.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(span) => locate(text, span.start),
            None => (1, String::new()),
        };
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line,
            key,
            message: e.message().trim().to_string(),
        }
    })
}

/// The 1-based line of byte `offset` and the dotted key at that line (table
/// header plus the `key =` on that line), as far as the text shows it.
pub fn locate(text: &str, offset: usize) -> (usize, String) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    // Only the lines up to the one of `offset`: this runs once per error.
    let idx = line_no.saturating_sub(1);
    let lines: Vec<&str> = text.lines().take(idx + 1).collect();
    let mut table = String::new();
    for l in lines.iter().take(idx + 1).rev() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            break;
        }
    }
    let here = lines.get(idx).map(|l| l.trim()).unwrap_or("");
    let key = if here.starts_with('[') {
        table.clone()
    } else if let Some((k, _)) = here.split_once('=') {
        let k = k.trim().trim_matches('"');
        if table.is_empty() {
            k.to_string()
        } else {
            format!("{table}.{k}")
        }
    } else {
        table
    };
    (line_no, key)
}

/// The 1-based line that sets top-level `key` (before any table), else 1.
pub fn line_of_top_key(text: &str, key: &str) -> usize {
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            break;
        }
        if let Some((k, _)) = t.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return i + 1;
        }
    }
    1
}
