"""The admin listener: health, readiness, metrics (and later the admin API)."""
