"""The control plane: who may call the proxy (virtual keys, teams, users) and, later, what they
may spend. Kept in a SQL database through SQLAlchemy 2's async engine: SQLite (aiosqlite) by
default under the data directory, PostgreSQL (asyncpg) for several proxy instances.

Nothing here imports the proxy: ``proxy/virtual_keys.py`` adapts the store to the proxy's
``KeyBackend``, ``proxy/routes/admin.py`` serves it over HTTP. See ``docs/keys.md``.
"""
