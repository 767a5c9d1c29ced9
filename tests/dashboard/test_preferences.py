"""A trader's display preferences: stored per user, validated, rendered into every page."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from dashboard.models import Preference

URL = "/settings/preferences/"


@pytest.fixture
def trader(django_user_model, redis_client):
    return django_user_model.objects.create_user(username="pat", password="not-used-here-1")


@pytest.mark.django_db
def test_defaults_then_changes_are_kept_per_user(client: Client, trader, django_user_model) -> None:
    client.force_login(trader)
    assert client.get(URL).json() == {"clock": "local", "palette": "standard"}
    answer = client.post(URL, json.dumps({"palette": "cb"}), content_type="application/json")
    assert answer.status_code == 200
    assert answer.json() == {"clock": "local", "palette": "cb"}
    client.post(URL, json.dumps({"clock": "utc"}), content_type="application/json")
    assert Preference.objects.get(user=trader).to_wire() == {"clock": "utc", "palette": "cb"}
    # Every page carries them on <html>, so the first paint has the trader's palette.
    page = client.get("/").content.decode()
    assert 'data-palette="cb" data-clock="utc"' in page

    other = django_user_model.objects.create_user(username="sam", password="not-used-here-2")
    client.force_login(other)
    assert client.get(URL).json() == {"clock": "local", "palette": "standard"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    ['{"palette": "rainbow"}', '{"clock": "mars"}', '{"font": "big"}', "[1]", "not json"],
)
def test_bad_preferences_are_refused(client: Client, trader, body: str) -> None:
    client.force_login(trader)
    answer = client.post(URL, body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["error"] == "bad_request"
    assert not Preference.objects.exists()


@pytest.mark.django_db
def test_changes_need_the_csrf_token_and_a_login(trader) -> None:
    strict = Client(enforce_csrf_checks=True)
    assert strict.get(URL).status_code == 302  # to the login page
    strict.force_login(trader)
    assert strict.post(URL, '{"clock": "utc"}', content_type="application/json").status_code == 403
