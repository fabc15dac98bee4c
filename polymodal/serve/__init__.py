"""HTTP serving of a trained run: FastAPI app, dynamic micro-batching, Prometheus metrics, API keys."""
