"""Price simulation, the long-lived producer hosted by Celery workers, and broadcasting."""
