"""Announce catalog changes made through model saves (admin forms, shell, fixtures)."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from dashboard.models import Symbol
from dashboard.services import announce_catalog_change


@receiver(post_save, sender=Symbol)
def symbol_saved(**_: object) -> None:
    announce_catalog_change()


@receiver(post_delete, sender=Symbol)
def symbol_deleted(**_: object) -> None:
    announce_catalog_change()
