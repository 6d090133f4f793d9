"""A short run of bench/fuzz.py's harness (the full campaign of 1,000,000 inputs is the bench's figure).

Every target gets inputs drawn through hypothesis (the seed of the random source that drives the structure-aware
mutators, so a failure is replayed from hypothesis' database), then a short multi-process campaign runs all targets
at once: no non-EdgeError exception, no hang, no false accept. The oracles themselves are tested too: a forgery
re-signed with the genuine Document Signer's key counts as a false accept, a card re-signed by a DS nobody vouches
for as "expected", a looping input as a hang (by the worker's CPU watchdog, and by the parent when no signal gets
through).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzzing import card as hostile_card
from bench.fuzzing.runner import from_json, run_campaign, run_one, to_json
from bench.fuzzing.targets import Corpus, Outcome, Target, all_targets, build_corpus, genuine_inputs
from edge.protocol.lds.dg2 import encode_dg2
from edge.sim.builder import face_jpeg
from edge.sim.model import dg_fid

TARGETS = all_targets()
#: A few cards, quirky ones among them: enough for every target, quick to build.
PROFILES = ("default", "quirk-no-sfi", "married")
#: The watchdog's CPU limit in these tests: far above any input's need (the slowest, a card read, takes ~0.1 s).
LIMIT = 2.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    built = build_corpus(tmp_path_factory.mktemp("sim-pki"), profiles=PROFILES)
    built.runtime_root = tmp_path_factory.mktemp("fuzz-runtime")
    yield built
    built.close_runtime()


def _clean(result_status: str, detail: str, error: BaseException | None) -> None:
    assert result_status not in ("exception", "hang", "false_accept"), (result_status, detail, repr(error))


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(seed=st.integers(min_value=0, max_value=2**64))
def test_every_target_survives_hypothesis_drawn_inputs(name: str, seed: int, corpus: Corpus) -> None:
    target = TARGETS[name]
    payload = target.generate(random.Random(seed), corpus)
    assert from_json(to_json(payload)) == payload  # what a reproducer file holds replays the same input
    result = run_one(target, payload, corpus, LIMIT)
    _clean(result.status, result.detail, result.error)


def test_short_campaign_on_two_workers_finds_nothing(corpus: Corpus, tmp_path: Path) -> None:
    summary = run_campaign(corpus, list(TARGETS.values()), inputs=1500, seed=20260601, limit=LIMIT, workers=2,
                           out=tmp_path / "findings")  # fmt: skip
    assert summary.inputs == 1500
    assert all(summary.by_target[name]["inputs"] for name in ("qr", "sod", "sm", "chip_wire", "chip_lies"))
    assert (summary.exceptions, summary.hangs, summary.false_accepts, summary.harness_errors) == (0, 0, 0, 0), [
        (f.kind, f.target, f.type, f.place, f.message) for f in summary.findings]


# --- the oracles ---------------------------------------------------------------------------------------------------


def _resigned(corpus: Corpus, signer: str) -> dict[str, Any]:
    """The default card with another face image, its EF.SOD re-signed by ``signer`` so every hash matches."""
    return {
        "profile": "default", "level": "lies", "seed": 7, "request": {"photo": True, "key": "can", "bac": False},
        "transport": "direct", "quirks": {}, "resign": signer, "wire": [], "lies": [],
        "files": {str(dg_fid(2)): encode_dg2(face_jpeg("someone else", 3000))},
    }  # fmt: skip


@pytest.mark.parametrize("trust", ["csca", "known_ds"])
@pytest.mark.parametrize(("signer", "status"), [("genuine", "false_accept"), ("untrusted", "expected"),
                                                ("rogue", "rejected"), ("rogue_keyid", "rejected"),
                                                ("expired", "rejected")])  # fmt: skip
def test_the_card_oracle_tells_forgeries_by_who_signed_them(signer: str, status: str, trust: str,
                                                            corpus: Corpus) -> None:  # fmt: skip
    """Under the test CSCA, or with only the test DS pinned (no CSCA installed: a rogue DS is then merely unknown,
    and "origin not proven" is an honest verdict for it, as is failed)."""
    allowed = {status, "expected"} if trust == "known_ds" and signer.startswith("rogue") else {status}
    outcome = TARGETS["chip_lies"].run({**_resigned(corpus, signer), "trust": trust}, corpus)
    assert outcome.status in allowed, outcome.detail


def test_a_genuine_card_under_every_transport_is_accepted(corpus: Corpus) -> None:
    for transport, quirks in (("direct", {}), ("t0", {"response_chunk": 64})):
        scenario = {**_resigned(corpus, "untrusted"), "files": {}, "resign": None, "transport": transport,
                    "quirks": quirks}  # fmt: skip
        assert hostile_card.run(scenario, corpus.cards["default"], corpus.pki, corpus.trust).status == "accepted"


def _spin(_payload: object, _corpus: Corpus) -> Outcome:
    while True:
        pass


def _sleep(_payload: object, _corpus: Corpus) -> Outcome:
    time.sleep(600)  # no CPU used: only the parent's wall-clock watchdog can end it
    return Outcome("accepted")


def _raise(payload: object, _corpus: Corpus) -> Outcome:
    raise KeyError(payload)


def test_watchdog_counts_a_spinning_input_as_a_hang(corpus: Corpus) -> None:
    spinning = Target("spin", 1.0, lambda rng, _c: rng.randbytes(4), _spin)
    assert run_one(spinning, b"", corpus, 0.2).status == "hang"


def test_campaign_counts_hangs_exceptions_and_stuck_workers_and_keeps_going(corpus: Corpus, tmp_path: Path) -> None:
    targets = [
        Target("fine", 20.0, lambda rng, _c: rng.randbytes(4), lambda _p, _c: Outcome("accepted")),
        Target("spin", 1.0, lambda rng, _c: rng.randbytes(4), _spin),
        Target("raise", 1.0, lambda rng, _c: rng.randbytes(4), _raise),
        Target("sleep", 0.3, lambda rng, _c: rng.randbytes(4), _sleep),
    ]
    # seed 1: 139 fine, 7 raising, 3 spinning and 1 sleeping input among 150
    summary = run_campaign(corpus, targets, inputs=150, seed=1, limit=0.1, workers=2, out=tmp_path, hard_limit=2.0)
    rows = summary.by_target
    assert summary.inputs == 150
    assert (rows["raise"]["inputs"], rows["spin"]["inputs"], rows["sleep"]["inputs"]) == (7, 3, 1)
    assert rows["spin"]["hangs"] == rows["spin"]["inputs"] > 0
    assert rows["raise"]["exceptions"] == rows["raise"]["inputs"] > 0
    assert rows["sleep"]["hangs"] == rows["sleep"]["inputs"] > 0
    assert rows["fine"]["accepted"] == rows["fine"]["inputs"]
    kinds = {(f.target, f.type) for f in summary.findings}
    assert {("spin", "InputTimeout"), ("raise", "KeyError"), ("sleep", "stuck (killed)")} <= kinds
    assert all(f.reproducer and Path(f.reproducer).is_file() for f in summary.findings if f.target == "raise")


def test_every_genuine_sample_is_accepted(corpus: Corpus) -> None:
    """The oracles do not cry wolf: unchanged samples (cards, tokens, lists, files) are accepted by every target."""
    corpus.close_runtime()  # a fresh replay guard: the genuine commands were not seen before
    inputs = genuine_inputs(corpus)
    assert set(inputs) == set(TARGETS)
    for name, payloads in inputs.items():
        for payload in payloads:
            result = run_one(TARGETS[name], payload, corpus, LIMIT)
            assert (name, result.status) == (name, "accepted"), (result.detail, repr(result.error))
