"""The rig file loader: the shipped virtual rig and the README's example load; malformed files fail loudly.

These need no rig and run everywhere: a loader that silently dropped a misspelt table would turn a rig visit into
a row of skips, which looks like success.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.protocol.verify.checks import Verdict
from hil_tests.conftest import HIL_DIR, RigFileError, load_rig

VIRTUAL_RIG = HIL_DIR / "virtual-rig.toml"

MINIMAL_CARD = '[[cards]]\nprofile = "default"\ncan = "012345"\n'

#: (rig file text, what the error must say)
MALFORMED = [
    ("name = [", "cannot read"),
    ('kind = "simulated"\n', "kind"),
    ('colour = "green"\n', "unknown key"),
    ('[reader]\nname = "ACS"\nslot = 1\n', "unknown key"),
    ('[[cards]]\nprofile = "default"\n', "missing or bad"),
    ('[[cards]]\nprofile = "default"\ncan = "12345"\n', "6 digits"),
    (MINIMAL_CARD + 'verdict = "ok"\n', "verdict"),
    (MINIMAL_CARD + 'atr = "3B 8"\n', "missing or bad"),
    ('cards = "default"\n', "array of tables"),
    ('[camera]\nsource = "webcam"\n', "camera.source"),
    ('[camera]\nsource = "replay"\nfps = 0\n', "fps"),
    ('[leds]\nwires = [{ led = "green", output = true, input = 5 }]\n', "a pin is"),
    ('[leds]\nwires = [{ led = "green", output = 17 }]\n', "missing or bad"),
    ('[leds]\ntime_scale = 2\n', "time_scale"),
    ('[broker]\nport = 1883\n', "missing or bad"),
    ('[broker]\nhost = "b"\nport = "8883"\n', "port"),
    ('[broker]\nhost = "b"\ntls = "yes"\n', "tls"),
    ('[broker]\nhost = "b"\ncert = "/c.crt"\n', "go together"),
    ('[broker]\nhost = "b"\ntls = false\nca = "/ca.crt"\n', "need tls"),
    ('[broker]\nhost = "b"\nward = "26734/+"\n', "ward"),
    ('[broker]\nhost = "b"\nclient_cert = "/c.crt"\n', "unknown key"),
    ('[broker]\nkind = "local"\n', "broker.kind"),
    ('[broker]\nkind = "virtual"\nhost = "b"\n', "unknown key"),
    ('[trust]\npath = "/etc"\n', "unknown key"),
    ('kind = "virtual"\n' + MINIMAL_CARD * 3, "at most"),
    ('kind = "virtual"\n' + MINIMAL_CARD + 'reader = "ACS ACR1252"\n', "vpcd"),
    ('kind = "virtual"\n' + (MINIMAL_CARD + 'reader = "Virtual PCD 00 00"\n') * 2, "one reader"),
    ('kind = "virtual"\n[camera]\nsource = "picam"\n', "replay"),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rig.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_virtual_rig_describes_every_part() -> None:
    rig = load_rig(VIRTUAL_RIG)
    assert rig.virtual
    assert rig.has_reader
    assert [card.profile for card in rig.cards] == ["default", "child"]
    assert {card.verdict for card in rig.cards} == {Verdict.VERIFIED}
    assert rig.camera is not None
    assert rig.camera.source == "replay"
    assert rig.camera.qr_in_view
    assert {wire.led for wire in rig.leds} == {"green", "amber", "red", "buzzer"}
    assert 0 < rig.led_time_scale < 1
    assert rig.broker is not None
    assert (rig.broker.virtual, rig.broker.tls) == (True, True)


def test_the_readme_example_loads(tmp_path: Path) -> None:
    readme = (HIL_DIR / "README.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", readme, re.DOTALL)
    assert example is not None, "hil_tests/README.md lost its rig.toml example"
    rig = load_rig(_write(tmp_path, example.group(1)))
    assert not rig.virtual
    assert rig.has_reader
    assert rig.has_cards
    assert rig.has_camera
    assert rig.has_leds
    assert rig.has_broker
    assert rig.trust_dir is not None


def test_a_mutual_tls_broker_loads(tmp_path: Path) -> None:
    rig = load_rig(_write(tmp_path, '[broker]\nhost = "b.example"\nca = "/ca.crt"\ncert = "/c.crt"\nkey = "/c.key"\n'
                                    'ward = "26734"\n'))
    assert rig.broker is not None
    assert (rig.broker.port, rig.broker.tls, rig.broker.ward, rig.broker.virtual) == (8883, True, "26734", False)
    assert (rig.broker.cert, rig.broker.key) == (Path("/c.crt"), Path("/c.key"))
    plain = load_rig(_write(tmp_path, '[broker]\nhost = "b.example"\ntls = false\n')).broker
    assert plain is not None
    assert plain.port == 1883


def test_an_empty_rig_has_nothing(tmp_path: Path) -> None:
    rig = load_rig(_write(tmp_path, 'name = "bare"\n'))
    assert (rig.kind, rig.has_reader, rig.has_cards, rig.has_camera, rig.has_leds) == ("hardware", False, False,
                                                                                        False, False)


def test_the_can_stays_out_of_reprs(tmp_path: Path) -> None:
    rig = load_rig(_write(tmp_path, MINIMAL_CARD))
    assert "012345" not in repr(rig)


@pytest.mark.parametrize(
    ("text", "complaint"),
    MALFORMED,
    ids=[f"{i}-{complaint}" for i, (_, complaint) in enumerate(MALFORMED)],
)
def test_a_malformed_rig_file_is_an_error(tmp_path: Path, text: str, complaint: str) -> None:
    with pytest.raises(RigFileError, match=complaint):
        load_rig(_write(tmp_path, text))


def test_a_missing_rig_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RigFileError, match="cannot read"):
        load_rig(tmp_path / "absent.toml")
