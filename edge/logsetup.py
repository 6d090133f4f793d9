"""Logging with personal data masked: citizens' names, ID numbers and addresses never reach a log line in clear.

Two defences: helpers (:func:`mask_id`, :func:`mask_name`, :func:`mask_text`) that code uses when it wants to
mention a person, and a filter on the root handler that masks any 9- or 12-digit number and any text marked with
:func:`pii` that slipped through anyway.
"""

from __future__ import annotations

import logging
import re
import sys

_DIGIT_RUN = re.compile(r"(?<!\d)(\d{9}|\d{12})(?!\d)")


def mask_id(id_number: str) -> str:
    """Keep the province prefix and the last two digits: enough to tell two citizens apart at the desk."""
    if len(id_number) <= 5:
        return "*" * len(id_number)
    return id_number[:3] + "*" * (len(id_number) - 5) + id_number[-2:]


def mask_name(name: str) -> str:
    """Initials only: 'Nguyễn Văn An' -> 'N. V. A.'."""
    return " ".join(part[0] + "." for part in name.split() if part) or "*"


def mask_text(text: str) -> str:
    """Any free text (addresses, places): its length only."""
    return f"<{len(text)} chars>"


def _mask_digit_runs(message: str) -> str:
    return _DIGIT_RUN.sub(lambda m: mask_id(m.group(1)), message)


class PiiFilter(logging.Filter):
    """Masks 9- and 12-digit runs (CMND / CCCD numbers) in every formatted record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _mask_digit_runs(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


def configure_logging(*, verbose: bool = False) -> None:
    """Log to stderr (journald picks it up under systemd) with the PII filter on the handler."""
    root = logging.getLogger()
    if any(isinstance(f, PiiFilter) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(PiiFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("PIL").setLevel(logging.INFO)  # its DEBUG is image-chunk noise that hides our APDU trace
