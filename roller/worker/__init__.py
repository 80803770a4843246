"""The worker side: its start checks (boot), its process's prover (prover), the job pipeline
(job), the L2 trace client and the next task's traces fetched ahead (trace_prefetch); the
Celery task itself is `roller.tasks`, where the design card puts it."""
