"""Import rules between layers (DEVELOPERS.md): nothing imports upward; device libraries stay in their drivers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

EDGE = Path(__file__).resolve().parents[2] / "edge"

#: Third-party modules only one driver may import, each mapped to the driver files allowed to import it.
DEVICE_LIBRARIES = {
    "smartcard": {"drivers/pcsc.py"},
    "pyzbar": {"drivers/zbar.py"},
    "zxingcpp": {"drivers/zxing.py"},
    "picamera2": {"drivers/picam.py"},
    "libcamera": {"drivers/picam.py"},
    "cv2": {"drivers/v4l2.py"},
    "gpiozero": {"drivers/leds.py"},
    "lgpio": {"drivers/leds.py"},
    "paho": {"daemon/mqtt.py", "office/receiver.py", "office/gateway.py"},
    "pkcs11": {"signers/pkcs11.py"},
}

#: Packages each layer must never import.
FORBIDDEN = {
    "protocol": ("edge.drivers", "edge.daemon", "edge.sim", "edge.office", "edge.commands", "edge.cli",
                 "socket", "threading", "subprocess", "time"),
    "drivers": ("edge.daemon", "edge.sim", "edge.office", "edge.commands", "edge.cli"),
    "sim": ("edge.drivers", "edge.daemon", "edge.office", "edge.commands", "edge.cli"),
    # The device key's signers serve the daemon, the office side and provisioning alike.
    "signers": ("edge.drivers", "edge.daemon", "edge.sim", "edge.office", "edge.commands", "edge.cli"),
    # The office side verifies what terminals send: it shares the protocol with them, not the terminal's daemon.
    "office": ("edge.drivers", "edge.daemon", "edge.sim", "edge.commands", "edge.cli"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources() -> list[Path]:
    return sorted(EDGE.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(EDGE)))
def test_layer_imports(path: Path) -> None:
    relative = path.relative_to(EDGE).as_posix()
    layer = relative.split("/", 1)[0]
    imported = _imports(path)
    for forbidden in FORBIDDEN.get(layer, ()):
        offending = {name for name in imported if name == forbidden or name.startswith(forbidden + ".")}
        assert not offending, f"{relative} imports {sorted(offending)}, which its layer must not"
    for library, allowed in DEVICE_LIBRARIES.items():
        uses = {name for name in imported if name == library or name.startswith(library + ".")}
        if uses:
            assert relative in allowed, f"{relative} imports {library}; only {sorted(allowed)} may"


def test_provisioning_does_not_import_the_daemon() -> None:
    """Provisioning runs on the ward's machine: it signs with :mod:`edge.signers` and :mod:`edge.protocol.jose`."""
    offending = {
        f"{path.name} imports {name}"
        for path in sorted((EDGE.parent / "provisioning").rglob("*.py"))
        for name in _imports(path)
        if name == "edge.daemon" or name.startswith("edge.daemon.")
    }
    assert not offending, sorted(offending)


#: Module-level names that are ISO 7816-4 numbers: declared only in edge/protocol/iso7816.py.
_ISO7816_NAME = re.compile(r"^(SW1?|INS|CLA)_[A-Z0-9_]+$|^EMRTD_AID$")


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(EDGE)))
def test_iso7816_numbers_are_declared_once(path: Path) -> None:
    """Status words, INS bytes, class bits and the eMRTD AID have one home; the simulator and the driver import it."""
    relative = path.relative_to(EDGE).as_posix()
    if relative == "protocol/iso7816.py":
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    declared = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name) and _ISO7816_NAME.match(target.id)
    }
    assert not declared, f"{relative} declares {sorted(declared)}: import them from edge.protocol.iso7816"


#: Who may import whom outside the product: the product imports no test code or benchmark; a benchmark needs no
#: test (what both need is in edge/sim); the HIL suite imports no benchmark.
SUPPORT_RULES = {
    "edge": ("tests", "bench", "hil_tests"),
    "provisioning": ("tests", "bench", "hil_tests"),
    "bench": ("tests", "hil_tests"),
    "hil_tests": ("bench",),
}


@pytest.mark.parametrize("top", sorted(SUPPORT_RULES))
def test_support_code_imports_downward_only(top: str) -> None:
    offending = {
        f"{path.relative_to(EDGE.parent)} imports {name}"
        for path in sorted((EDGE.parent / top).rglob("*.py"))
        for name in _imports(path)  # lazy imports inside functions included
        if name.split(".", 1)[0] in SUPPORT_RULES[top]
    }
    assert not offending, sorted(offending)
