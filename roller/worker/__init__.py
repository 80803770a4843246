"""The worker side: its start checks (boot), its process's prover (prover), the job pipeline
(job) and the L2 trace client; the Celery task itself is `roller.tasks`, where the design card
puts it."""
