"""The analyses of a probe: options, projection, patching, both in one pass, statistics and the result cache."""
