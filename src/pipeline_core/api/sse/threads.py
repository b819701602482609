"""``ThreadStreams``: live event streams written from this process.

Committed events reach an ``EventBus``; each stream subscribes to it, sends the stored events
after its start (on the request's thread), then is handed to the ``StreamHub``, whose one
thread writes every stream. Subscribing before reading the log leaves no gap at the seam;
the hub drops what the replay already sent.
"""

from __future__ import annotations

import contextlib
import logging
import socket

from pipeline_core.api.sse.bus import EventBus
from pipeline_core.api.sse.hub import StreamHub
from pipeline_core.api.sse.route import EventEncoder, StreamStart, replay
from pipeline_core.api.transport.framing import chunk
from pipeline_core.events import TOKEN_REVOKED, Event
from pipeline_core.store.base import Store

log = logging.getLogger("pipeline_core.api")


class ThreadStreams:
    def __init__(self, store: Store, keepalive: float, queue_size: int) -> None:
        self.store = store
        self.queue_size = queue_size
        self.bus = EventBus()
        self.hub = StreamHub(keepalive)
        self.encode = EventEncoder()

    def publish(self, events: list[Event]) -> None:
        self.bus.publish(events)
        for event in events:
            if event.type == TOKEN_REVOKED:
                self.hub.end_account(str(event.payload.get("name")))

    def attach(self, sock: socket.socket, start: StreamStart) -> None:
        subscription = self.bus.subscribe(
            maxsize=self.queue_size, accept=start.accepts, key=start.key, encode=self.encode
        )
        sent = start.after
        try:
            for last_seq, data in replay(self.store, start, self.encode):
                if subscription.closed:
                    # It fell behind the live events while the stored ones went out (the
                    # replay follows the log as it grows): like any subscriber that falls
                    # behind it is dropped, and resumes from the last id it has.
                    raise ConnectionAbortedError
                sock.sendall(b"".join(chunk(data)) if start.chunked else data)
                sent = last_seq
        except Exception as exc:  # the client went away, or the log could not be read
            if not isinstance(exc, OSError):
                log.exception("replaying events for a stream failed")
            subscription.close()
            with contextlib.suppress(OSError):
                sock.close()
            return
        self.hub.attach(
            sock, subscription, sent, self.encode, chunked=start.chunked, account=start.account
        )

    def stop(self) -> None:
        # The hub first: stopping, it ends every stream's body with its last chunk. Closing
        # the subscriptions first let a stream with bytes still queued be cut short (a
        # browser reports an incomplete chunked body) before the hub knew it was stopping.
        self.hub.stop()
        self.bus.close_all()
