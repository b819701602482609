"""The engine's pure core: state + message + now → effects. No store, executor, clock,
threads or I/O; ``tests/engine/test_decide_purity.py`` checks every module of this folder."""
