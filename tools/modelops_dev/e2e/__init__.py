"""The whole loop on a real node: shared by `modelops demo` and tests/e2e (see loop.py)."""
