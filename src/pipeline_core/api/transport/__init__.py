"""HTTP/1.1 on an event loop: the server (accept, deadlines, handler pool), a connection's
phases, the request reader (httptools) and the bytes of our own answers (framing)."""
