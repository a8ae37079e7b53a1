"""Chats on PostgreSQL, for any number of chatproxy instances sharing one database (issue 15).

- engine.py: PostgresStore, the store's interface (store/engine.py) on PostgreSQL.
- pool.py: the connections, and psycopg's errors made the store's own.
- ``migrations/NNN_*.sql`` and migrate.py: the schema, applied once under an advisory lock.
- connection.py: what every connection is set up with (JSON through orjson, no JIT).
- tree.py: a chat dict to rows and back, and the rows a change touches (pure, no SQL);
  rows.py: reading them and writing what changed; cache.py: chats kept while current.
- chats.py: reads and changes of chats, the listing; search.py: search.
- turns.py: leases and a turn's SQL; leases.py: holding chats, as one process does it;
  journal.py: the journals of a process's turns, written together.

Every SQL function takes a psycopg ``AsyncConnection`` and runs its own short transaction:
no transaction, lock or connection outlives one call. Errors are the store's own
(store/errors.py).
"""
