"""The REST API: a standard-library HTTP server in front of the store and the engine."""
