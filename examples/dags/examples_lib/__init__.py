"""Helpers imported by the example DAGs (the DAGs folder is on sys.path)."""
