"""Building runs and models locally: small GPT-2-architecture LMs, a generated corpus, probe runs, the demo."""
