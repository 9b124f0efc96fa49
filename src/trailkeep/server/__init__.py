"""The service: the HTTP API, credentials, the group-commit writer and the storage.

Install with ``pip install "trailkeep[server]"``; nothing outside ``trailkeep.cli`` imports it.
"""
