"""The path forwarded to the receiver: as the requester encoded it, never above the
receiver's endpoint (hub.routing.decide raw_suffix and join_url; join_url's basic rows are in
test_routing_unit.py)."""

from __future__ import annotations

import pytest

from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode
from hub.routing.urls import join_url, raw_suffix

PREFIX = "/ocpi/2.3.0/locations/sender"


@pytest.mark.parametrize(
    ("raw", "decoded", "expected"),
    [
        ("", "", ""),
        ("/", "/", "/"),
        ("/LOC1", "/LOC1", "/LOC1"),
        ("/LOC1/EVSE1/1", "/LOC1/EVSE1/1", "/LOC1/EVSE1/1"),
        ("/UID%2F1%3Fx/authorize", "/UID/1?x/authorize", "/UID%2F1%3Fx/authorize"),
        ("/NL/CPA/LOC%201", "/NL/CPA/LOC 1", "/NL/CPA/LOC%201"),
        ("/v1.2/a.b", "/v1.2/a.b", "/v1.2/a.b"),  # a dot inside a segment is no dot segment
        ("/.../x", "/.../x", "/.../x"),
        ("/.hidden", "/.hidden", "/.hidden"),
        ("/%252e%252e/x", "/%2e%2e/x", "/%252e%252e/x"),  # decoded once: still no dot segment
    ],
)
def test_raw_suffix_is_the_path_as_sent(raw: str, decoded: str, expected: str) -> None:
    assert raw_suffix(PREFIX + raw, decoded) == expected


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("/../credentials", "/../credentials"),
        ("/a/./b", "/a/./b"),
        ("/LOC1/..", "/LOC1/.."),
        ("/.", "/."),
        ("/%2e%2e/credentials", "/../credentials"),
        ("/%2E%2E/credentials", "/../credentials"),
        ("/NL/CPA/.%2e/%2e./credentials", "/NL/CPA/../../credentials"),
        ("/a/%2e/b", "/a/./b"),
        ("/a%2F..%2Fcredentials", "/a/../credentials"),  # an encoded slash
    ],
)
def test_dot_segments_are_refused(raw: str, decoded: str) -> None:
    """A URL library resolves '..' (even %2e%2e): forwarded, it climbs out of the endpoint."""
    with pytest.raises(OcpiError) as error:
        raw_suffix(PREFIX + raw, decoded)
    assert (error.value.status_code, error.value.http_status) == (
        StatusCode.INVALID_PARAMETERS,
        400,
    )


@pytest.mark.parametrize(
    ("base", "suffix", "query", "expected"),
    [
        ("http://h/loc//", "/LOC1", "", "http://h/loc/LOC1"),
        ("http://h/loc", "//LOC1", "", "http://h/loc/LOC1"),
        ("http://h/loc/", "/LOC1/", "", "http://h/loc/LOC1/"),  # the suffix's own slash stays
        ("http://h/loc/", "", "offset=5", "http://h/loc/?offset=5"),
        ("http://h/tokens", "/UID%2F1/authorize", "", "http://h/tokens/UID%2F1/authorize"),
    ],
)
def test_join_url_more(base: str, suffix: str, query: str, expected: str) -> None:
    assert join_url(base, suffix, query) == expected
