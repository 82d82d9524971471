"""The hub's public URLs, built from the names of its routes: one source for both."""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Router

from hub.ocpi.models import VERSIONS


class OcpiVersion(Convertor[str]):
    """A path segment naming a version the hub speaks: one route tree per version."""

    regex = "|".join(v.replace(".", r"\.") for v in VERSIONS)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        if value not in VERSIONS:
            raise ValueError(f"the hub does not speak OCPI {value}")
        return value


register_url_convertor("ocpi_version", OcpiVersion())
# Where route paths name the OCPI version (every route module imports it from here, so the
# convertor is registered before any of them is compiled).
VERSION_PATH = "/ocpi/{version:ocpi_version}"


class RouteUrls:
    """``urls("link", relay_id=...)`` -> the absolute public URL of that named route
    (``hub.routing.urls.HubUrls``)."""

    def __init__(self, router: Router, public_url: str) -> None:
        self.router = router
        self.public_url = public_url

    def __call__(self, name: str, /, **params: str) -> str:
        return str(self.router.url_path_for(name, **params).make_absolute_url(self.public_url))
