"""What the running processes show about themselves: the Prometheus metrics of the listener
and the workers with their scrape endpoints, and the GPUs as NVML reads them. The listener and
the workers import these; the operators' tools (roller.operator) only read them."""
