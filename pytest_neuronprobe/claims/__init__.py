"""Claims: metric names, the expression language, verdicts and claims files (pytest-free)."""
