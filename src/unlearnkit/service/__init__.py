"""The deletion-request service."""
