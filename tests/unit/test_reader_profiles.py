"""Reader profiles (edge/protocol/readers.py): chosen by name or USB id, every fact with its source, and what a
profile implies in words; the simulator's models of them (edge/sim/reader.py) keep documented limits."""

from __future__ import annotations

import pytest

from edge.protocol.readers import GENERIC, PROFILES, VIRTUAL, by_key, profile_for
from edge.sim.card import VirtualCard
from edge.sim.reader import MODELS, ReaderModel, VirtualReader
from edge.sim.runner import demo_spec


@pytest.mark.parametrize(("name", "key"), [
    ("ACS ACR122U PICC Interface 00 00", "acr122u"),
    ("ACS ACR1252 1S CL Reader [ACR1252 1S CL Reader(1)] 00 00", "acr1252u"),
    ("ACS ACR1281 1S Dual Reader [ACR1281 1S Dual Reader PICC] 00 01", "acr1281u-c1"),
    ("ACS ACR1552 1S CL Reader PICC 00 00", "acr1552u"),
    ("HID Global OMNIKEY 5022 Smart Card Reader 00 00", "omnikey-5022"),
    ("HID Global OMNIKEY 5422CL Smartcard Reader 01 00", "omnikey-5422"),
    ("HID OMNIKEY 5427 CK 00 00", "omnikey-5427ck"),
    ("Identiv uTrust 3700 F CL Reader 00 00", "utrust-3700f"),
    ("Identiv uTrust 4701 F Dual Interface Reader(2) 00 00", "utrust-4701f"),
    ("Feitian R502 [R502 Contactless Reader] 00 00", "feitian-r502"),
    ("FT bR301 00 00", "feitian-br301"),
    ("Virtual PCD 00 00", "vpcd"),
    ("Some Unknown Reader 00 00", "generic-ccid"),
])  # fmt: skip
def test_profile_by_reader_name(name: str, key: str) -> None:
    assert profile_for(name).key == key


def test_usb_id_wins_over_the_name() -> None:
    assert profile_for("Generic Reader 00 00", (0x072F, 0x2224)).key == "acr1281u-c1"
    assert profile_for("Generic Reader 00 00", (0x1234, 0x5678)) is GENERIC


def test_every_fact_has_a_source_and_every_profile_a_key() -> None:
    keys = [profile.key for profile in (*PROFILES, VIRTUAL, GENERIC)]
    assert len(keys) == len(set(keys))
    for profile in (*PROFILES, VIRTUAL, GENERIC):
        assert profile.facts, profile.key
        assert all(fact.what and fact.source for fact in profile.facts), profile.key
        assert by_key(profile.key) is profile


def test_implications_say_what_a_reader_costs() -> None:
    assert "no extended length: DG2 (15 KB) takes 68 APDUs" in by_key("acr122u").implications()
    assert any("contact slot only" in line for line in by_key("feitian-br301").implications())
    assert any("tried once per reader" in line for line in GENERIC.implications())


def test_models_keep_documented_limits_and_fail_with_one_byte() -> None:
    assert (MODELS["acr122u"].max_command, MODELS["acr122u"].extended) == (261, False)
    assert MODELS["acr1281u-c1"].on_failure == "keeps-card"  # documented: never sent
    assert MODELS["generic-ccid"].on_failure == "resets-card"  # unknown: the pessimistic model
    card = VirtualCard(demo_spec())
    card.power_on()
    reader = VirtualReader(card, ReaderModel("tiny", max_response=4))
    select = bytes.fromhex("00A4040C07A0000002471001")
    assert reader.process(select) == b"\x90\x00"
    assert reader.process(bytes.fromhex("00B09E0000")) == b"\x00"  # EF.COM answer over 4 bytes: failed
    assert len(reader.log.failures) == 1
