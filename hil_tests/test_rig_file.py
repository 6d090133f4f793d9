"""The rig file loader: the shipped virtual rig and the README's example load; malformed files fail loudly.

These need no rig and run everywhere: a loader that silently dropped a misspelt table would turn a rig visit into
a row of skips, which looks like success.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.protocol.access.policy import AccessMethod, CanKey, MrzKey
from edge.protocol.chip import ReadRequest, read_chip
from edge.protocol.verify.checks import CheckStatus, Verdict
from edge.sim.card import VirtualCard
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import FID_CARD_ACCESS
from hil_tests.rig import HIL_DIR, RigFileError, load_rig

VIRTUAL_RIG = HIL_DIR / "virtual-rig.toml"

MINIMAL_CARD = '[[cards]]\nprofile = "default"\ncan = "012345"\n'
#: A JMRTD test card personalised from quirk-no-sfi (the default person): BAC with the MRZ key of its DG1.
BAC_CARD = '[[cards]]\nprofile = "quirk-no-sfi"\naccess = "bac"\nmrz = ["203012345", "030201", "280201"]\n'

#: (rig file text, what the error must say)
MALFORMED = [
    ("name = [", "cannot read"),
    ('kind = "simulated"\n', "kind"),
    ('colour = "green"\n', "unknown key"),
    ('[reader]\nname = "ACS"\nslot = 1\n', "unknown key"),
    ('[[cards]]\nprofile = "default"\n', "missing or bad"),
    ('[[cards]]\nprofile = "default"\ncan = "12345"\n', "6 digits"),
    (MINIMAL_CARD + 'access = "ca"\n', "access"),
    (MINIMAL_CARD + 'mrz = ["203012345", "030201", "280201"]\n', "goes with access"),
    (BAC_CARD + 'can = "012345"\n', "not a can"),
    ('[[cards]]\nprofile = "default"\naccess = "bac"\n', "missing or bad"),
    ('[[cards]]\nprofile = "default"\naccess = "bac"\nmrz = "203012345"\n', "mrz is"),
    ('[[cards]]\nprofile = "default"\naccess = "bac"\nmrz = ["2030123456", "030201", "280201"]\n', "document"),
    ('[[cards]]\nprofile = "default"\naccess = "bac"\nmrz = ["203012345", "03-02-01", "280201"]\n', "YYMMDD"),
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


def test_a_bac_card_is_given_by_its_mrz_key(tmp_path: Path) -> None:
    pace, bac = load_rig(_write(tmp_path, MINIMAL_CARD + BAC_CARD)).cards
    assert (pace.bac, pace.key) == (False, CanKey("012345"))
    assert (bac.bac, bac.can, bac.key) == (True, None, MrzKey("203012345", "030201", "280201"))
    assert "203012345" not in repr(bac)


def test_a_virtual_bac_card_is_a_jmrtd_like_card_read_by_bac(tmp_path: Path) -> None:
    """What a virtual rig would insert for the entry (its two vpcd readers hold the CI cards): the profile's card
    without EF.CardAccess and PACE, whose chip refuses reads by SFI: it reads completely over BAC, CA and AA pass."""
    from hil_tests.virtual import card_spec

    (entry,) = load_rig(_write(tmp_path, BAC_CARD)).cards
    spec = card_spec(entry)
    assert FID_CARD_ACCESS not in spec.image.mf_files
    assert (spec.quirks.pace_supported, spec.quirks.no_sfi) == (False, True)
    chip = VirtualCard(spec, SimChipSecurity(spec.secrets, spec.quirks))
    chip.power_on()
    read = read_chip(chip, ReadRequest(entry.key, allow_bac_fallback=True))
    assert read.access.method is AccessMethod.BAC
    assert "6A82" in (read.no_card_access_reason or "")  # EF.CardAccess: SFI refused, then SELECT found none
    assert (read.chip_auth.status, read.active_auth.verified) == (CheckStatus.PASSED, True)
    assert set(read.data_groups) == {1, 13, 14, 15}
    wrong = load_rig(_write(tmp_path, BAC_CARD.replace("280201", "290201"))).cards[0]
    with pytest.raises(RigFileError, match="not the card's"):
        card_spec(wrong)


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
