"""Message ids (transport_and_format, "Unique message IDs"): the spec advises a GUID/UUID;
the hub writes random (version 4) UUIDs without building UUID objects."""

from __future__ import annotations

import os
import uuid

from hub.ocpi.headers import new_message_id

DRAWS = [new_message_id() for _ in range(1000)]


def test_every_id_is_a_canonical_version_4_uuid() -> None:
    for value in DRAWS:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122), value
        assert str(parsed) == value  # lower-case hex, 8-4-4-4-12


def test_ids_differ() -> None:
    assert len(set(DRAWS)) == len(DRAWS)


def test_the_random_bits_around_the_fixed_ones_vary() -> None:
    """Only the version nibble and the two variant bits are fixed; the variant nibble takes
    all of 8, 9, a, b (each missed by 1000 draws with probability (3/4)^1000)."""
    assert {value[19] for value in DRAWS} == set("89ab")
    assert {value[14] for value in DRAWS} == {"4"}
    assert len({value[15] for value in DRAWS}) == 16


def test_a_forked_process_draws_other_ids() -> None:
    """``hub serve --workers N`` runs several processes: ids stay unique across them."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, "".join(new_message_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    ours = {new_message_id() for _ in range(100)}
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(child, 0)
    theirs = {text[i : i + 36] for i in range(0, len(text), 36)}
    assert len(theirs) == 100 and not ours & theirs
