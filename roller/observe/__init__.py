"""What the running processes show about themselves: the Prometheus metrics of the listener
and the workers with their scrape endpoints (`metrics.record` is the observer of lifecycle
events, roller.lifecycle.events, that both processes subscribe), and the GPUs as NVML reads
them. The operators' tools (roller.operator) only read them."""
