"""Placeholder replaced by the end-to-end demo."""
