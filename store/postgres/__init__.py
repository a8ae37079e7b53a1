"""Chats on PostgreSQL: the SQL of every store operation, for several chatproxy instances
sharing one database (issue 15).

- ``migrations/NNN_*.sql`` and migrate.py: the schema, applied once under an advisory lock.
- connection.py: what every connection is set up with (JSON through orjson).
- tree.py: a chat dict to rows and back, and the rows a change touches (pure, no SQL).
- chats.py: reads and changes of chats; turns.py: leases and turns; search.py: search.

Every function takes a psycopg ``AsyncConnection`` (from the pool) and runs its own short
transaction: no transaction, lock or connection outlives one call. Errors are the store's
own (store/errors.py).
"""
