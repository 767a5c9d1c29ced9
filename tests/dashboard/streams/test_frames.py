"""Frames both consumers build alike: the single-symbol stream's resume position from its URL."""

from __future__ import annotations

import pytest

from dashboard.market.protocol import Position
from dashboard.streams.frames import since_from_query


def test_epoch_and_seq_in_the_query_resume_the_symbol() -> None:
    assert since_from_query(b"epoch=e1&seq=42", "AAA") == {"AAA": Position(epoch="e1", seq=42)}


@pytest.mark.parametrize(
    "query",
    [
        b"epoch=e1&seq=%C2%B2",  # "²": str.isdigit() says yes, int() refuses it
        b"epoch=e1&seq=%D9%A3",  # "٣" (Arabic-Indic three): int() would read it as 3
        b"epoch=e1&seq=-1",
        b"epoch=e1&seq=",
        b"seq=5",
        b"epoch=e1&seq=" + b"9" * 17,
    ],
)
def test_anything_but_ascii_digits_is_no_resume_position(query: bytes) -> None:
    assert since_from_query(query, "AAA") == {}
