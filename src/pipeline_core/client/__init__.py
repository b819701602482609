"""A Python client for the pipeline-core REST API, standard library only.

from pipeline_core.client import Client

with Client("http://127.0.0.1:8080", token=None) as api:
    run = api.trigger_run("etl", {"sha": "abc"}, idempotency_key="build-42").run
    ended = api.wait_run("etl", run["run_id"], timeout=600)
    for event in api.events(run_id=run["run_id"]):
        ...
"""

from pipeline_core.client.api import Client, Triggered, Waited
from pipeline_core.client.events import Event
from pipeline_core.client.transport import (
    APIError,
    ClientError,
    ServerUnreachable,
    StreamTimedOut,
)

__all__ = [
    "APIError",
    "Client",
    "ClientError",
    "Event",
    "ServerUnreachable",
    "StreamTimedOut",
    "Triggered",
    "Waited",
]
