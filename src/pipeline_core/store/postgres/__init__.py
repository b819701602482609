"""The PostgreSQL backend: the store over a connection pool, batched writes and the
server-side functions that move tasks in one call."""
