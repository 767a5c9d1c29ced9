"""Tell open streams about catalog changes, once the change is committed."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from dashboard.catalog import catalog_entries
from dashboard.models import Symbol
from workers.broadcast import publish_catalog


def _publish_after_commit() -> None:
    # on_commit: a stream must never announce a symbol the database rolled back.
    transaction.on_commit(lambda: publish_catalog(catalog_entries()))


@receiver(post_save, sender=Symbol)
def symbol_saved(**_: object) -> None:
    _publish_after_commit()


@receiver(post_delete, sender=Symbol)
def symbol_deleted(**_: object) -> None:
    _publish_after_commit()
