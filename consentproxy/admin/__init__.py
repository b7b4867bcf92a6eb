"""The admin listener: health, readiness, metrics, and the admin API (`api`, tokens and scopes in `auth`)."""
