//! Where the SDXL model comes from: `--model`, else `$HUATU_MODEL`, else `model = "DIR"`
//! in the user's config file (`$XDG_CONFIG_HOME/huatu/config.toml`, else
//! `~/.config/huatu/config.toml`). Nothing is baked into the binary: without any of the
//! three a command that needs the model stops with one error that lists them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The environment variable read when no `--model` is given.
pub const MODEL_ENV: &str = "HUATU_MODEL";

/// `config.toml`; a misspelt key is an error rather than silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// The SDXL model: a diffusers folder or a single-file checkpoint. A relative path
    /// is relative to the config file's folder.
    model: Option<PathBuf>,
}

/// The config file's path: `$XDG_CONFIG_HOME/huatu/config.toml`, else
/// `$HOME/.config/huatu/config.toml` (None without either variable).
pub fn config_path() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let config_home = absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".config")))?;
    Some(config_home.join("huatu").join("config.toml"))
}

/// The model from the flag, the environment or the config file, in that order.
pub fn sdxl_model(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os(MODEL_ENV).filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let config = config_path();
    if let Some(path) = &config {
        if let Some(model) = read_config(path)?.model {
            let folder = path.parent().unwrap_or(Path::new("."));
            return Ok(folder.join(model));
        }
    }
    let config = config.map_or_else(
        || "$XDG_CONFIG_HOME/huatu/config.toml".to_string(),
        |path| path.display().to_string(),
    );
    anyhow::bail!(
        "no SDXL model given: pass --model DIR (a diffusers folder or a .safetensors \
         checkpoint), set {MODEL_ENV}, or write `model = \"DIR\"` into {config}; \
         the tiny random test model is --model tests/fixtures/sdxl_tiny"
    )
}

/// The config file's settings; a missing file has none.
fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ConfigFile::default())
        }
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    toml::from_str(&text).with_context(|| format!("{} is not a valid huatu config", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_model_and_refuses_unknown_keys() -> anyhow::Result<()> {
        let config: ConfigFile = toml::from_str("model = \"/models/sdxl\"\n")?;
        assert_eq!(config.model, Some(PathBuf::from("/models/sdxl")));
        let config: ConfigFile = toml::from_str("")?;
        assert_eq!(config.model, None);
        let error = toml::from_str::<ConfigFile>("modle = \"/models/sdxl\"\n")
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("unknown field `modle`"), "{error}");
        Ok(())
    }

    #[test]
    fn a_missing_config_file_has_no_settings() -> anyhow::Result<()> {
        let config = read_config(Path::new("/nonexistent/huatu/config.toml"))?;
        assert_eq!(config.model, None);
        Ok(())
    }

    #[test]
    fn the_flag_wins() -> anyhow::Result<()> {
        assert_eq!(sdxl_model(Some(Path::new("a/b")))?, PathBuf::from("a/b"));
        Ok(())
    }
}
