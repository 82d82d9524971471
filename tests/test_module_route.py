"""The hub's front takes functional module requests straight to their endpoint
(hub/web/app.py): its quick match must agree with the module route's own, path by path."""

from __future__ import annotations

import pytest
from starlette.routing import Match

from hub.web import functional

PATHS = [
    "/ocpi/2.3.0/locations/sender",
    "/ocpi/2.3.0/locations/sender/",
    "/ocpi/2.3.0/locations/sender/LOC1",
    "/ocpi/2.3.0/locations/sender/LOC1/EVSE1/CON1",
    "/ocpi/2.2.1/tokens/receiver/NL/TNM/012345678",
    "/ocpi/2.3.0/commands/receiver/START_SESSION",
    "/ocpi/2.3.0/credentials",
    "/ocpi/2.3.0/credentials/",
    "/ocpi/2.3.0/hubclientinfo",
    "/ocpi/2.3.0/hubclientinfo/x",
    "/ocpi/2.3.0/details",
    "/ocpi/2.3.0/locations",
    "/ocpi/2.3.0/locations/",
    "/ocpi/2.3.0//sender",
    "/ocpi/2.3.0/locations//LOC1",
    "/ocpi/2.1.1/locations/sender",
    "/ocpi/9.9/locations/sender",
    "/ocpi/2.3.0x/locations/sender",
    "/ocpi/versions",
    "/ocpi/2.3.0/Locations/SENDER/a%2Fb",
    "/ocpi/2.3.0/locations/sender/a b",
    "/ocpi/2.3.0/locations/sender/line\nbreak",
    "/ocpi/2.3.0/locations/sender\n",
    "/OCPI/2.3.0/locations/sender",
    "/admin/ocpi/2.3.0/locations/sender",
    "/",
    "",
]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", PATHS)
def test_quick_match_agrees_with_the_route(path: str, method: str) -> None:
    scope = {"type": "http", "path": path, "method": method, "root_path": ""}
    match, child = functional.route.matches(dict(scope))
    quick = dict(scope)
    taken = functional.matches(quick)
    # What the quick match declines goes to Starlette's router: a partial match (wrong
    # method) is answered 405 there, a line break in the path reaches the route there.
    assert taken == (match is Match.FULL and "\n" not in path)
    if taken:
        assert quick["path_params"] == child["path_params"]


def test_a_root_path_is_left_to_the_route() -> None:
    scope = {"type": "http", "path": "/hub/ocpi/2.3.0/locations/sender", "method": "GET"}
    assert not functional.matches({**scope, "root_path": "/hub"})
