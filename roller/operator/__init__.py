"""Operators' tools: `roller status`, Flower, `roller config check` (the metrics the processes
serve are in roller.observe)."""
