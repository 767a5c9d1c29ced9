"""The Celery application: workers host the price producer, beat runs housekeeping."""

from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticker.settings")

app = Celery("ticker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])

# The long-lived producer runs inside each worker process, not as a queued task:
# a task can vanish with a killed worker, a lease in Redis cannot be lost unseen.
app.steps["worker"].add("workers.worker_step.ProducerStep")


@signals.task_failure.connect
def count_task_failure(sender: object = None, **_: object) -> None:
    from ticker import metrics

    metrics.TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()
