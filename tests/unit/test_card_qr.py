"""The virtual card's QR: by default the chip's person; with ``overrides`` a QR that disagrees with the chip."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.protocol.cccd_qr import parse_cccd_qr
from edge.sim.card_qr import card_qr, card_qr_text
from edge.sim.profile import load_profile

PERSON = load_profile("default").person


def test_without_overrides_the_qr_is_the_chip_person() -> None:
    qr = parse_cccd_qr(card_qr_text(PERSON))
    assert (qr.id_number, qr.full_name, qr.date_of_birth, qr.place_of_residence) == (
        PERSON.id_number, PERSON.full_name, PERSON.date_of_birth, PERSON.place_of_residence)
    assert card_qr(PERSON, {}) == card_qr(PERSON)


def test_overrides_change_only_the_named_fields() -> None:
    qr = parse_cccd_qr(card_qr_text(PERSON, {"full_name": "Trần Thị Bình", "place_of_residence": "Phường 1, Huế"}))
    assert (qr.full_name, qr.place_of_residence) == ("Trần Thị Bình", "Phường 1, Huế")
    assert (qr.id_number, qr.date_of_birth, qr.sex, qr.date_of_issue) == (
        PERSON.id_number, PERSON.date_of_birth, PERSON.sex, PERSON.date_of_issue)
    assert qr.consistent  # the ID still opens the chip: only the cross-check can tell


def test_override_values_are_validated_and_the_layout_follows_the_printed_issue_date() -> None:
    qr = card_qr(PERSON, {"date_of_issue": "2024-08-01", "sex": "Nữ"})
    assert (qr.format, qr.extra_fields) == ("2024", ("", "", ""))  # an adult: no parents printed
    assert not qr.consistent  # the ID's sex digit says male


def test_a_2024_card_prints_the_cancelled_id_and_a_childs_parents() -> None:
    child = load_profile("child").person
    qr = parse_cccd_qr(card_qr_text(child))
    assert (qr.generation, qr.parent_names, qr.cancelled_id_numbers) == ("2024", (child.father, child.mother), ())
    adult = load_profile("card2024").person
    qr = parse_cccd_qr(card_qr_text(adult))
    assert adult.cancelled_id_number is not None
    assert (qr.generation, qr.parent_names, qr.cancelled_id_numbers) == ("2024", (), (adult.cancelled_id_number,))
    assert qr.unrecognised_extra_fields == ()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"religion": "Phật giáo"}, "qr_overrides.religion"),  # on the chip, not in the QR
        ({"fullname": "Typo"}, "qr_overrides.fullname"),
        ({"sex": "F"}, "qr_overrides"),
        ({"id_number": "12345"}, "qr_overrides"),
    ],
)
def test_bad_overrides_are_config_errors_naming_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        card_qr(PERSON, overrides)
    assert caught.value.key == key


def test_a_typo_in_a_profiles_qr_overrides_fails_when_it_loads(tmp_path: Path) -> None:
    profile = tmp_path / "typo.toml"
    profile.write_text('based_on = "default"\n[qr_overrides]\nfull_nam = "Trần Thị Bình"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="not a field the card QR prints"):
        load_profile(profile)


def test_the_qr_mismatch_profile_prints_another_name_than_its_chip() -> None:
    profile = load_profile("qr-mismatch")
    assert parse_cccd_qr(card_qr_text(profile.qr_person)).full_name != profile.person.full_name
