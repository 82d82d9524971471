"""What crosses between OCPI 2.2.1 and 2.3.0 as it is (hub/routing/crossing.py)."""

from __future__ import annotations

import pytest

from hub.routing.crossing import flow, untranslated

CASES = [
    # module, from, to, suffix, goes as it is
    ("locations", "2.2.1", "2.2.1", "/NL/CPA/LOC1", True),
    ("tariffs", "2.3.0", "2.3.0", "/NL/CPA/T1", True),
    # mod_locations 2.3.0 adds optional fields and opens enums: 2.2.1 objects are 2.3.0 ones.
    ("locations", "2.2.1", "2.3.0", "/NL/CPA/LOC1", True),
    ("tokens", "2.2.1", "2.3.0", "/DE/MSA/T1", True),
    # ... but not the other way (new fields; EMAID and LICENSE_PLATE tokens).
    ("locations", "2.3.0", "2.2.1", "/NL/CPA/LOC1", False),
    ("tokens", "2.3.0", "2.2.1", "/DE/MSA/T1", False),
    # Price, PriceLimit, tax_included differ both ways.
    ("tariffs", "2.2.1", "2.3.0", "/NL/CPA/T1", False),
    ("sessions", "2.3.0", "2.2.1", "/NL/CPA/S1", False),
    ("cdrs", "2.2.1", "2.3.0", "", False),
    # The same on the wire in both versions.
    ("chargingprofiles", "2.3.0", "2.2.1", "/S1", True),
    ("commands", "2.3.0", "2.2.1", "/START_SESSION", True),
    ("commands", "2.2.1", "2.3.0", "/START_SESSION", True),
    # 2.2.1 "CommandType" is closed: a custom command has no 2.2.1 form.
    ("commands", "2.3.0", "2.2.1", "/CHARGE_FASTER", False),
    ("commands", "2.2.1", "2.3.0", "/CHARGE_FASTER", True),
    # A platform of no recorded version speaks the newest.
    ("tariffs", None, "2.3.0", "/NL/CPA/T1", True),
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
