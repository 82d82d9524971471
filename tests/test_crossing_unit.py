"""What crosses between OCPI 2.2.1 and 2.3.0 as it is (hub/routing/crossing.py)."""

from __future__ import annotations

import pytest

from hub.ocpi.models import InterfaceRole
from hub.routing.crossing import flow, level, translated, untranslated

CASES = [
    # module, from, to, suffix, goes as it is
    ("locations", "2.2.1", "2.2.1", "/NL/CPA/LOC1", True),
    ("tariffs", "2.3.0", "2.3.0", "/NL/CPA/T1", True),
    # Translated both ways (hub/ocpi/translation.py).
    ("locations", "2.3.0", "2.2.1", "/NL/CPA/LOC1", True),
    ("tariffs", "2.2.1", "2.3.0", "/NL/CPA/T1", True),
    ("cdrs", "2.2.1", "2.3.0", "", True),
    # The same on the wire in both versions.
    ("chargingprofiles", "2.3.0", "2.2.1", "/S1", True),
    ("commands", "2.3.0", "2.2.1", "/START_SESSION", True),
    ("commands", "2.2.1", "2.3.0", "/START_SESSION", True),
    # 2.2.1 "CommandType" is closed: a custom command has no 2.2.1 form.
    ("commands", "2.3.0", "2.2.1", "/CHARGE_FASTER", False),
    ("commands", "2.2.1", "2.3.0", "/CHARGE_FASTER", True),
    # A platform of no recorded version speaks the newest.
    ("commands", None, "2.2.1", "/CHARGE_FASTER", False),
]


@pytest.mark.parametrize(("module", "source", "target", "suffix", "goes"), CASES)
def test_untranslated(
    module: str, source: str | None, target: str, suffix: str, goes: bool
) -> None:
    reason = untranslated(module, source, target, suffix)
    assert (reason is None) is goes, reason


def test_a_get_brings_the_receivers_objects_a_push_the_requesters() -> None:
    assert flow("GET", "2.2.1", "2.3.0") == ("2.3.0", "2.2.1")
    assert flow("PUT", "2.2.1", "2.3.0") == ("2.2.1", "2.3.0")
    assert flow("POST", "2.3.0", "2.2.1") == ("2.3.0", "2.2.1")


def test_only_what_differs_is_translated() -> None:
    assert translated("tariffs", "2.2.1", "2.3.0")
    assert not translated("tariffs", "2.3.0", "2.3.0")
    assert not translated("commands", "2.2.1", "2.3.0")
    assert not translated("locations", None, "2.3.0")


@pytest.mark.parametrize(
    ("interface", "suffix", "expected"),
    [
        (InterfaceRole.RECEIVER, "/NL/CPA/L1", 1),
        (InterfaceRole.RECEIVER, "/NL/CPA/L1/E1", 2),
        (InterfaceRole.RECEIVER, "/NL/CPA/L1/E1/1", 3),
        (InterfaceRole.SENDER, "/L1/E1", 2),
        (InterfaceRole.SENDER, "", 1),
        (InterfaceRole.RECEIVER, "", 1),
    ],
)
def test_the_object_a_url_names(interface: InterfaceRole, suffix: str, expected: int) -> None:
    assert level(interface, suffix) == expected
