"""Integration tests of the pytest plugin (driven by pytester)."""
