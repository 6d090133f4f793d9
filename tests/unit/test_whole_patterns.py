"""A name that becomes an MQTT topic level, a certificate's CN or DNS name, an HTTP header or an account is matched
whole: ``$`` also matches before a trailing newline, so ``"T-01\\n"`` passed ``^...$`` and went on into a topic, a
certificate or an audit line. Patterns end in ``\\Z``; a test reads the source so no ``$`` comes back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.errors import ConfigError, ProvisioningError
from edge.office.gateway_config import parse_gateway_config
from edge.office.web.officers import COUNTER, TERMINAL, USERNAME
from provisioning.pki import TerminalIdentity
from provisioning.ward_ca import server_alt_names

ROOT = Path(__file__).resolve().parents[2]


def test_no_shipped_pattern_ends_in_a_dollar() -> None:
    compiled = re.compile(r"""re\.compile\(r?f?["'](.*)["']""")
    found = [f"{path.relative_to(ROOT)}:{number}" for top in ("edge", "provisioning")
             for path in sorted((ROOT / top).rglob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if (match := compiled.search(line)) and match.group(1).startswith("^") and "$" in match.group(1)
             and "DOTALL" not in line]  # fmt: skip
    assert found == []


@pytest.mark.parametrize("pattern", [USERNAME, TERMINAL, COUNTER])
def test_an_account_name_or_counter_with_a_trailing_newline_is_refused(pattern: re.Pattern[str]) -> None:
    assert pattern.match("t-01")
    assert not pattern.match("t-01\n")


def test_a_terminal_id_or_host_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ProvisioningError):
        TerminalIdentity("T-01\n", "26734")
    with pytest.raises(ProvisioningError):
        server_alt_names(["broker.example\n"])
    with pytest.raises(ConfigError):
        parse_gateway_config({"instance": "office-1", "ward": "26734\n", "broker": {"host": "127.0.0.1"},
                              "storage": {"url": "sqlite:///x.db"}})  # fmt: skip
