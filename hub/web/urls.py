"""The hub's public URLs, built from the names of its routes: one source for both."""

from __future__ import annotations

from starlette.routing import Router


class RouteUrls:
    """``urls("link", relay_id=...)`` -> the absolute public URL of that named route
    (``hub.routing.urls.HubUrls``)."""

    def __init__(self, router: Router, public_url: str) -> None:
        self.router = router
        self.public_url = public_url

    def __call__(self, name: str, /, **params: str) -> str:
        return str(self.router.url_path_for(name, **params).make_absolute_url(self.public_url))
