"""Model and auth signals that open streams must hear about.

Catalog changes made through model saves (admin forms, shell, fixtures) are announced;
a logout closes the streams of that session, deactivating a user closes all of theirs.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from dashboard.market.broadcast import publish_revoked, session_group, user_group
from dashboard.models import Symbol
from dashboard.services import announce_catalog_change


@receiver(post_save, sender=Symbol)
def symbol_saved(**_: object) -> None:
    announce_catalog_change()


@receiver(post_delete, sender=Symbol)
def symbol_deleted(**_: object) -> None:
    announce_catalog_change()


@receiver(user_logged_out)
def session_ended(request: HttpRequest, **_: object) -> None:
    session_key = getattr(request, "session", None) and request.session.session_key
    if session_key:
        publish_revoked(session_group(session_key), "logged out")


@receiver(post_save, sender=get_user_model())
def user_saved(instance: object, **_: object) -> None:
    if not getattr(instance, "is_active", True):
        user_id = instance.pk
        transaction.on_commit(lambda: publish_revoked(user_group(user_id), "user deactivated"))
