"""wharf_jobservice: the job service (event-stream consumers; Celery jobs to come)."""
