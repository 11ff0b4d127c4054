"""Fixtures shared by every test folder: the MongoDB server (tests/mongo_server.py)."""

pytest_plugins = ["mongo_server"]
