"""Data minimisation shared by the proxy, the analytics endpoints and the consent records."""
