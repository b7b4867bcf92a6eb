"""Cookies at the HTTP layer: parsing, classification, enforcement, inventory."""
