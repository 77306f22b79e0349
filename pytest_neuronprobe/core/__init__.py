"""The bottom layer: errors, digests, atomic writes, runs, heads, models and probes (no analysis)."""
