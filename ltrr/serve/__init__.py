"""The HTTP service over the Engine (``ltrr serve``): app, serving state, metrics. See docs/serving.md."""
