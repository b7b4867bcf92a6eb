"""Streaming HTML rewriting: the banner injected, trackers blocked before consent."""
