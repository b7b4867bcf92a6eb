"""Configuration: the model, the TOML loader and secret references."""

from consentproxy.config.loader import ConfigError, Problem, config_from_dict, load_config
from consentproxy.config.model import Config, Limits, ListenAddress, SecretsConfig, ServerConfig, SiteConfig

__all__ = [
    "Config",
    "ConfigError",
    "Limits",
    "ListenAddress",
    "Problem",
    "SecretsConfig",
    "ServerConfig",
    "SiteConfig",
    "config_from_dict",
    "load_config",
]
