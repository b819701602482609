"""Where tries run: the local executor (warm worker processes, fresh processes or threads),
routing by task, ``workers/`` (the worker pool) and ``celery/`` (Celery workers)."""
