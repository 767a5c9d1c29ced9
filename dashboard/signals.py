"""Model and auth signals that open streams must hear about.

Catalog changes made through model saves (admin forms, shell, fixtures) are announced;
a logout closes the streams of that session; deactivating a user, changing their
password or deleting them closes all of theirs. What no signal announces (session
expiry, bulk updates) is caught by the streams' access audit (``dashboard.streams.access``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from dashboard.market.broadcast import publish_revoked, session_group, user_group
from dashboard.models import Symbol
from dashboard.services import announce_catalog_change, forget_symbol_state


@receiver(post_save, sender=Symbol)
def symbol_saved(**_: object) -> None:
    announce_catalog_change()


@receiver(post_delete, sender=Symbol)
def symbol_deleted(instance: Symbol, **_: object) -> None:
    # Announced first: producers drop the symbol, then its Redis state goes (both after commit).
    announce_catalog_change()
    forget_symbol_state(instance.symbol)


@receiver(user_logged_out)
def session_ended(request: HttpRequest, **_: object) -> None:
    session_key = getattr(request, "session", None) and request.session.session_key
    if session_key:
        publish_revoked(session_group(session_key), "logged out")


@receiver(pre_save, sender=get_user_model())
def user_saving(instance: Any, **_: object) -> None:
    # Compared with the stored hash, so any way of setting a password counts.
    stored = type(instance).objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._ticker_password_changed = stored is not None and stored != instance.password


@receiver(post_save, sender=get_user_model())
def user_saved(instance: Any, **_: object) -> None:
    user_id = instance.pk
    if not getattr(instance, "is_active", True):
        transaction.on_commit(lambda: publish_revoked(user_group(user_id), "user deactivated"))
    elif getattr(instance, "_ticker_password_changed", False):
        # Streams opened with the old password close; the browser that changed it
        # reconnects at once with its updated session.
        transaction.on_commit(lambda: publish_revoked(user_group(user_id), "password changed"))


@receiver(post_delete, sender=get_user_model())
def user_deleted(instance: Any, **_: object) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: publish_revoked(user_group(user_id), "user deleted"))
