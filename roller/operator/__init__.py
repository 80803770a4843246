"""Operators' tools: `roller status`, Flower, the metrics endpoints, `roller config check`."""
