"""The SQLite backend: the store over one file (or memory), and waking followers in other
processes through Unix sockets."""
