"""Trailkeep: a self-hosted, multi-tenant, verifiable audit-log service."""

__version__ = "0.1.0"
