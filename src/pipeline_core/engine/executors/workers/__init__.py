"""The warm worker pool: pool, roster of processes, links to them, spawning through the
zygote, exits, the wire format and the worker's own loop (``main``)."""
