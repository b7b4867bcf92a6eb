"""Consent: categories, the signed consent state, and how a request's decision is read."""
