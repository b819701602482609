"""Tries on Celery workers over Redis or RabbitMQ (the ``celery`` extra).

The engine sends each try as a message (``executor``); ``pipeline-core worker`` takes it,
claims it in the shared store, runs it in its own worker pool exactly as the engine's local
pool would, and reports the end as a store event (``worker``). The engine learns of
completions from the event log, never from Celery results.
"""
