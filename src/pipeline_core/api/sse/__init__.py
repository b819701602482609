"""The live event stream, ``GET /api/v1/events``.

* ``route`` — the entry point: checks the request, notes the log's head and hands the
  connection to an ``EventStreams`` backend (the protocol is defined there too);
* ``threads`` — ``ThreadStreams``, the backend that writes streams from this process;
* ``process`` — ``ProcessStreams``, the backend that hands connections to a process of their
  own (which runs ``ThreadStreams``), so the fan-out never competes with the engine;
* ``hub`` — the one thread that writes every stream of a ``ThreadStreams``;
* ``bus`` — the bounded fan-out of committed events to the streams' subscriptions.
"""
