"""The QR code printed on a virtual card, and a camera frame showing it: what the demo, rigs and tests hold up.

The QR carries the same person as the chip's DG13 (the terminal cross-checks them), in the layout of the card's
issue date: 2021 cards have 7 fields; cards issued from 2024-07-01 add the cancelled ID number (empty if none) and the
parents' names, which Circular 16/2024/TT-BCA prints only for a child under 14 (empty slots otherwise). The order of
those three is this simulator's choice: the real order is unconfirmed, and the parser does not rely on it.
A profile can make the QR disagree with the chip (``overrides``): the cross-check's failure case, on a genuine chip.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import segno
from PIL import Image

from edge.protocol.card_expiry import age_on
from edge.protocol.card_generation import generation_of
from edge.protocol.cccd_qr import CccdQr, encode_cccd_qr
from edge.sim.profile import Person, qr_person

FRAME_SIZE = (640, 480)  # the scanner's lores stream
QR_MODULE_PX = 4  # a card held ~25 cm from a Pi camera shows about this many pixels per module
#: Below this age at issue a 2024 card's QR carries the parents' names.
PARENTS_PRINTED_UNDER = 14

def card_qr(person: Person, overrides: Mapping[str, object] | None = None) -> CccdQr:
    """The QR fields printed on ``person``'s card; ``overrides`` prints some of them differently from the chip
    (a doctored sticker, another person's QR), layout following the printed issue date.

    Raises :class:`ConfigError` for an override of a field the QR does not print or of an invalid value.
    """
    person = qr_person(person, overrides) if overrides else person
    layout_2024 = generation_of(person.date_of_issue) == "2024"
    extra: tuple[str, ...] = ()
    if layout_2024:
        child = age_on(person.date_of_birth, person.date_of_issue) < PARENTS_PRINTED_UNDER
        parents = (person.father or "", person.mother or "") if child else ("", "")
        extra = (person.cancelled_id_number or "", *parents)
    return CccdQr(
        id_number=person.id_number,
        old_id_number=person.old_id_number,
        full_name=person.full_name,
        date_of_birth=person.date_of_birth,
        sex=person.sex,
        place_of_residence=person.place_of_residence,
        date_of_issue=person.date_of_issue,
        extra_fields=extra,
        format="2024" if layout_2024 else "2021",
    )


def card_qr_text(person: Person, overrides: Mapping[str, object] | None = None) -> str:
    """The text of ``person``'s card QR (see :func:`card_qr` for ``overrides``), as a decoder returns it."""
    return encode_cccd_qr(card_qr(person, overrides))


def write_qr_frame(text: str, path: Path) -> Path:
    """A grey 640x480 camera frame with the QR of ``text`` upright in the middle, as a replay camera shows it."""
    modules = np.pad(np.array(segno.make(text, error="m", micro=False, encoding="utf-8").matrix, dtype=bool), 4)
    qr = Image.fromarray(np.where(modules, 20, 230).astype(np.uint8))
    qr = qr.resize((qr.width * QR_MODULE_PX, qr.height * QR_MODULE_PX), Image.Resampling.NEAREST)
    canvas = Image.new("L", FRAME_SIZE, 110)
    canvas.paste(qr, ((FRAME_SIZE[0] - qr.width) // 2, (FRAME_SIZE[1] - qr.height) // 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
