"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``."""
