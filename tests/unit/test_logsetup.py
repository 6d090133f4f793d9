"""The masked log handler: what reaches the console, at which level, on which stream."""

from __future__ import annotations

import datetime as dt
import io
import logging
import sys
from collections.abc import Iterator

import pytest

from edge.logsetup import PiiFilter, configure_logging, log_unexpected, mask_date, mask_id, mask_name, mask_text


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, restored after the test (other tests share the process)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def _masked_handlers(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if any(isinstance(f, PiiFilter) for f in h.filters)]


def test_masks() -> None:
    assert mask_id("079203001245") == "079*******45"
    assert mask_name("Nguyễn Văn An") == "N. V. A."
    assert mask_text("Số 12, phường Bến Nghé") == "<22 chars>"
    assert mask_date(dt.date(2003, 2, 1)) == mask_date("01/02/2003") == "2003"
    assert mask_date("Không thời hạn") == mask_date("\uff10\uff11/02/\uff12\uff10\uff10\uff13") == "****"


@pytest.mark.parametrize("number", ["079203001245", "025123456"])
def test_an_id_number_that_slipped_into_a_message_is_masked(number: str, root_logging: logging.Logger,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging()
    logging.getLogger("edge.test").warning("card %s read in %d ms", number, 120)
    assert number not in stream.getvalue()
    assert mask_id(number) in stream.getvalue()
    assert "120 ms" in stream.getvalue()  # other numbers are left alone


def test_one_shot_commands_are_quiet_services_say_more_verbose_says_all(root_logging: logging.Logger,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    log = logging.getLogger("edge.test")
    configure_logging()
    log.info("retrying")
    log.warning("card removed")
    configure_logging(level=logging.INFO)
    log.info("connected")
    log.debug("apdu")
    configure_logging(verbose=True)
    log.debug("apdu trace")
    assert stream.getvalue().splitlines() == ["WARNING edge.test: card removed", "INFO edge.test: connected",
                                              "DEBUG edge.test: apdu trace"]  # fmt: skip
    assert len(_masked_handlers(root_logging)) == 1  # reconfigured, not stacked


def test_the_handler_writes_to_the_stream_current_at_each_record(root_logging: logging.Logger,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, out = io.StringIO(), io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging()
    first.close()  # a capture that ended: logging to it must not fail
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("edge.test").warning("one")
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging(stream="stdout")  # the daemon logs to stdout
    logging.getLogger("edge.test").warning("two")
    assert second.getvalue() == "WARNING edge.test: one\n"
    assert out.getvalue() == "WARNING edge.test: two\n"


def test_an_unexpected_error_is_logged_without_its_message(root_logging: logging.Logger,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A pydantic error quotes its input, which can be a citizen's name: only the type and the stack are logged."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging()
    name = "Nguyễn Văn An"  # data, as in production: not in the source lines the stack shows
    try:
        raise ValueError(f"full_name {name!r} is too long")
    except ValueError as exc:
        log_unexpected(logging.getLogger("edge.test"), "attempt %d failed", exc, 3)
    text = stream.getvalue()
    assert text.startswith("ERROR edge.test: attempt 3 failed (ValueError)\n")
    assert "test_logsetup.py" in text  # the stack, for the support desk
    assert "Nguyễn" not in text
