"""Route handlers: plain functions from a parsed request to a response."""
