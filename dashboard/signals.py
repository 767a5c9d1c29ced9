"""Model and auth signals that open streams must hear about.

Catalog changes made through model saves (admin forms, shell, fixtures) are announced;
a logout closes the streams of that session; deactivating a user, changing their
password or deleting them closes all of theirs. A password change or reset (any save
that sets a new password: the password forms, the admin, ``changepassword``) also
deletes the user's API tokens, right after the save. What no signal announces
(session expiry, bulk updates), or a close message that is lost, is caught by the
streams' access audit (``dashboard.streams.access``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher, identify_hasher, is_password_usable
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from dashboard import tokens
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


def is_hash_upgrade(stored: str, instance: Any, update_fields: frozenset[str] | None) -> bool:
    """Whether this save only re-hashes the same password, as ``check_password`` does when the
    preferred hasher or its work factor changed ("hash upgrades shouldn't be considered
    password changes", Django says): the raw password is not kept, only ``password`` is
    saved, and the stored hash is one the preferred hasher would upgrade."""
    if getattr(instance, "_password", None) is not None or update_fields != {"password"}:
        return False
    if not is_password_usable(instance.password):
        return False
    try:
        old = identify_hasher(stored)
    except ValueError:
        return False
    preferred = get_hasher("default")
    return old.algorithm != preferred.algorithm or preferred.must_update(stored)


@receiver(pre_save, sender=get_user_model())
def user_saving(instance: Any, update_fields: frozenset[str] | None = None, **_: object) -> None:
    # Compared with the stored hash, so any way of setting a password counts.
    stored = type(instance).objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    changed = stored is not None and stored != instance.password
    # A re-hash of the same password keeps the tokens; other sessions' auth hash no longer
    # matches, as for Django's own views, and the access audit closes their streams.
    instance._ticker_password_changed = changed and not is_hash_upgrade(stored, instance, update_fields)


@receiver(post_save, sender=get_user_model())
def user_saved(instance: Any, **_: object) -> None:
    user_id = instance.pk
    password_changed = getattr(instance, "_ticker_password_changed", False)
    if password_changed:
        # Tokens made with the old password die with it, even if the user is deactivated
        # in the same save (a reactivation must not bring them back).
        tokens.revoke_all(user_id, "password changed")
    if not getattr(instance, "is_active", True):
        transaction.on_commit(lambda: publish_revoked(user_group(user_id), "user deactivated"))
    elif password_changed:
        # Streams opened with the old password close (token streams are in the user's
        # group too); the browser that changed it reconnects at once with its updated session.
        transaction.on_commit(lambda: publish_revoked(user_group(user_id), "password changed"))


@receiver(post_delete, sender=get_user_model())
def user_deleted(instance: Any, **_: object) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: publish_revoked(user_group(user_id), "user deleted"))
