"""Runs the log store contract (tests/store_contract.py) on every backend."""

from store_contract import *  # noqa: F403 - the contract's fixtures and tests, collected here
