"""Hardware-in-loop fixtures: a rig file (TOML) named by ``CCCD_EDGE_RIG`` says what hardware is attached.

Without the variable every test here is skipped with the reason, so ``pytest`` stays green on any machine. A rig
file describes real hardware (a Pi with reader, test cards, camera, LEDs wired back to inputs) or, with
``kind = "virtual"``, the simulated stack that CI runs (hil_tests/virtual.py: private pcscd + vpcd with virtual
cards, a replay camera, gpiozero mock pins; and a private mosquitto for a ``[broker]`` of ``kind = "virtual"``).
Tests ask the :class:`Rig` what it has and skip what it lacks; the fixtures hand them the real or the virtual
part, so the same test functions run on both. The rig file's model and loader are hil_tests/rig.py.
See hil_tests/README.md for the format.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.protocol.verify.trust import TrustStore
from hil_tests.rig import HIL_DIR, BrokerAccess, Rig, RigFileError, load_rig

RIG_ENV = "CCCD_EDGE_RIG"
#: The shared private-pcscd fixtures (DEVELOPERS.md); loaded only for a virtual rig, because the plugin points
#: this process's PC/SC client at a private socket, which would hide a real rig's reader.
PCSC_PLUGIN = "tests.fixtures.pcsc"
_RIG_KEY = pytest.StashKey["Rig | None"]()
NO_RIG = f"{RIG_ENV} not set: hardware-in-loop tests need a rig file (see hil_tests/README.md)"


# --- pytest hooks --------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Load the rig once; for a virtual rig, load the private-pcscd plugin before any PC/SC context exists."""
    rig_path = os.environ.get(RIG_ENV)
    try:
        rig = load_rig(Path(rig_path)) if rig_path else None
    except RigFileError as exc:
        raise pytest.UsageError(f"{RIG_ENV}: {exc}") from None
    config.stash[_RIG_KEY] = rig
    if rig is not None and rig.virtual and not config.pluginmanager.has_plugin(PCSC_PLUGIN):
        config.pluginmanager.import_plugin(PCSC_PLUGIN)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test here that needs the rig as ``hil``; skip those, with the reason, when no rig is named.

    Tests of the rig file itself need no rig: they run everywhere, so a broken loader shows before a rig visit.
    """
    skip = pytest.mark.skip(reason=NO_RIG)
    for item in items:
        if HIL_DIR in item.path.parents and "rig" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.hil)
            if config.stash.get(_RIG_KEY, None) is None:
                item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test asking for ``rig_card`` runs once per test card of the rig (id: the card's profile)."""
    if "rig_card" not in metafunc.fixturenames:
        return
    rig = metafunc.config.stash.get(_RIG_KEY, None)
    cards = rig.cards if rig is not None else ()
    if not cards:
        reason = f"rig {rig.name} has no [[cards]]" if rig is not None else NO_RIG
        metafunc.parametrize("rig_card", [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=["no-card"])
        return
    metafunc.parametrize("rig_card", cards, ids=[f"{i}-{card.profile}" for i, card in enumerate(cards)])


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rig(pytestconfig: pytest.Config) -> Rig:
    loaded = pytestconfig.stash.get(_RIG_KEY, None)
    if loaded is None:
        pytest.skip(NO_RIG)
    return loaded


@pytest.fixture(scope="session")
def virtual_cards(rig: Rig, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A virtual rig's cards on its vpcd readers for the whole session (a real rig's lie on its reader): the
    ``VirtualCards`` (for their virtual readers' logs), None on a real rig."""
    if not rig.virtual:
        yield None
        return
    from hil_tests.virtual import VirtualCards

    # Requested here, not as parameters: the plugin that provides them is only loaded for a virtual rig.
    try:
        stack = request.getfixturevalue("pcsc_stack")
    except pytest.skip.Exception as exc:  # CI must not go green by skipping the rig it is there to run
        pytest.fail(f"the virtual rig needs the PC/SC test stack: {exc}")
    with VirtualCards(rig, stack, request.getfixturevalue("pcsc_driver")) as cards:
        yield cards


@pytest.fixture(scope="session")
def reader_rig(rig: Rig, request: pytest.FixtureRequest) -> Rig:
    if not rig.has_reader:
        pytest.skip(f"rig {rig.name} has no [reader]")
    request.getfixturevalue("virtual_cards")
    return rig


@pytest.fixture(scope="session")
def trust_store(rig: Rig) -> TrustStore:
    """The CSCAs verify_chip trusts: the simulator's test CSCA on a virtual rig, else ``[trust] dir`` (or none)."""
    if rig.virtual:
        from hil_tests.virtual import sim_trust_store

        return sim_trust_store()
    if rig.trust_dir is not None:
        return TrustStore.load(rig.trust_dir)
    return TrustStore.from_der(())


@pytest.fixture(scope="session")
def led_rig(rig: Rig) -> Rig:
    if not rig.has_leds:
        pytest.skip(f"rig {rig.name} has no [leds] wires")
    return rig


@pytest.fixture
def pin_factory(led_rig: Rig) -> Iterator[Any]:
    """gpiozero's pin factory for the LED tests: the board's own (None) on hardware; on a virtual rig a
    MockFactory whose output pins drive their wired input pins, as the resistors do on a real rig."""
    if not led_rig.virtual:
        yield None
        return
    from hil_tests.virtual import wired_mock_factory

    factory = wired_mock_factory(led_rig.leds)
    yield factory
    factory.reset()
    factory.close()


@pytest.fixture(scope="session")
def rig_broker(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerAccess]:
    """The rig's broker, reachable: a ``kind = "virtual"`` one is a private mosquitto (edge/sim/broker.py) for the
    session, with a throw-away CA and client certificate when ``tls``; a real one is taken as the file says."""
    spec = rig.broker
    if spec is None:
        pytest.skip(f"rig {rig.name} has no [broker]: the terminal has nowhere to deliver")
    if not spec.virtual:
        yield BrokerAccess(spec.host, spec.port, spec.tls, spec.ca, spec.cert, spec.key, spec.ward)
        return
    from edge.errors import BrokerStartError
    from edge.sim.broker import MosquittoBroker, make_pki

    directory = tmp_path_factory.mktemp("broker")
    pki = make_pki(directory / "pki", client_cn="hil-terminal") if spec.tls else None
    broker = MosquittoBroker(directory, pki=pki)
    try:
        broker.start()
    except BrokerStartError as exc:  # the rig file asked for it: a skip here would hide the missing part
        pytest.fail(f"the rig's virtual broker did not start (apt install mosquitto?): {exc}")
    try:
        yield BrokerAccess(broker.host, broker.port, spec.tls, pki.ca_cert if pki else None,
                           pki.client_cert if pki else None, pki.client_key if pki else None, spec.ward)
    finally:
        broker.stop()
