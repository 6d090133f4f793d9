"""Logging with personal data masked: citizens' names, ID numbers and addresses never reach a log line in clear.

Two defences: helpers (:func:`mask_id`, :func:`mask_name`, :func:`mask_text`) that code uses when it wants to
mention a person, and a filter on the root handler that masks any 9- or 12-digit run (an old CMND or a CCCD number)
that slipped through anyway. Names and addresses have no shape a filter could recognise, so the first defence is the
only one for them; a stack test reads the daemon's debug log of a whole read and looks for each.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
import traceback

# Unicode digits (\d) on purpose: this masks, it does not parse, and a number in full-width digits is one too.
_DIGIT_RUN = re.compile(r"(?<!\d)(\d{9}|\d{12})(?!\d)")
_YEAR = re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])")


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


def mask_date(value: dt.date | str) -> str:
    """The year only: with the day and month a birth date narrows a person down (and a CCCD's expiry date is a
    birthday). A text date ("01/02/2003") keeps its 4-digit year; text without one becomes '****'."""
    if isinstance(value, dt.date):
        return f"{value.year:04d}"
    match = _YEAR.search(value)
    return match.group(0) if match else "****"


def _mask_digit_runs(message: str) -> str:
    return _DIGIT_RUN.sub(lambda m: mask_id(m.group(1)), message)


def log_unexpected(logger: logging.Logger, message: str, exc: BaseException, *args: object) -> None:
    """Log an unexpected exception's type and stack but not its message: messages may quote the data that failed
    (pydantic's repeat the input, which can be a citizen's name or address), and the filter cannot see names."""
    stack = "".join(traceback.format_tb(exc.__traceback__))
    logger.error(message + " (%s)\n%s", *args, type(exc).__name__, stack.rstrip())


class PiiFilter(logging.Filter):
    """Masks 9- and 12-digit runs (CMND / CCCD numbers) in every formatted record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _mask_digit_runs(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


class _CurrentStream(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout``/``sys.stderr`` is at each record, not the object it was at set-up: a
    replaced stream (pytest's capture, a redirect) that is closed later must not turn log calls into errors."""

    def __init__(self, name: str) -> None:
        super().__init__(getattr(sys, name))
        self._name = name

    def follow(self, name: str) -> None:
        """Write to ``sys.<name>`` from now on."""
        self._name = name

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = getattr(sys, self._name)
        super().emit(record)


def configure_logging(*, verbose: bool = False, stream: str = "stderr", level: int = logging.WARNING) -> None:
    """Log to ``stream`` ("stderr", or "stdout" for the daemon; journald takes either) with the PII filter.

    One-shot commands log at WARNING (their output is the answer; a retry worth a log line is not worth a line on
    the officer's console), services at INFO, anything with ``verbose`` at DEBUG. Calling it again reconfigures the
    one masked handler rather than adding another, so several commands in one process (tests) each get their own
    stream and level.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _CurrentStream)), None)
    if handler is None:
        handler = _CurrentStream(stream)
        handler.addFilter(PiiFilter())
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    handler.follow(stream)
    root.setLevel(logging.DEBUG if verbose else level)
    logging.getLogger("PIL").setLevel(logging.INFO)  # its DEBUG is image-chunk noise that hides our APDU trace
