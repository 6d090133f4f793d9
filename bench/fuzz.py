"""Fuzzing as a figure: the parsers, the verifiers and a hostile card, fed >= 1,000,000 structure-aware mutations of
genuine samples (and random bytes), counting what must stay zero.

Targets: the CCCD QR; BER-TLV; EF.COM, DG1, DG2, DG11-DG15 and EF.CardAccess; SubjectPublicKeyInfo with explicit
curves; EF.SOD with passive authentication, and the data-group hashes against it; CMS signers; CSCA master lists;
trust-store import (certificates, link certificates, CRLs, master lists, PEM bundles); secure-messaging unwrap;
office commands (``/cmd``) and result tokens (JWS/JWE, and the receiver's ``ingest``), both as damaged in transit
and as hostile JSON under a valid signature; and a card read end to end (``read_chip`` + ``verify_chip``) from a
hostile simulated chip, below secure messaging (``chip_wire``) and lying under valid MACs (``chip_lies``).

Figures: inputs, non-``EdgeError`` exceptions (by type and target, a reproducer saved for each), hangs (an input that
used more than ``--seconds-per-input-limit`` CPU seconds), false accepts (a verdict that is not failed, or an
accepted import/token/command/SM answer, on data that differs from what its genuine signer signed), inputs/s and
wall time. Goal: 0 / 0 / 0. A card re-signed by a DS that nothing in the trust store vouches for, ending "intact,
origin not proven", is counted apart ("expected"): that rung says exactly that.

Run: .venv/bin/python bench/fuzz.py [--inputs 1000000] [--seed 1] [--workers N] [--targets qr,sod,...]
     .venv/bin/python bench/fuzz.py --replay /tmp/cccd-edge-fuzz/<reproducer>.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from bench.fuzzing.runner import format_summary, from_json, run_campaign, run_one
from bench.fuzzing.targets import all_targets, build_corpus


def _replay(path: Path, pki_dir: Path | None) -> int:
    record = json.loads(path.read_text())
    corpus = build_corpus(pki_dir)
    target = all_targets()[record["target"]]
    payload = from_json(record["input"])
    print(f"replaying {record['kind']} in {record['target']} (seed {record['seed']}, input {record['index']})")
    start = time.perf_counter()
    try:
        result = run_one(target, payload, corpus, None)
    finally:
        corpus.close_runtime()
    print(f"-> {result.status} after {time.perf_counter() - start:.3f} s ({result.cpu:.3f} s CPU) {result.detail}")
    if result.error is not None:
        traceback.print_exception(result.error)
    return 0 if result.status in ("accepted", "rejected", "expected") else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds-per-input-limit", type=float, default=1.0, dest="limit",
                        help="CPU seconds one input may take before it counts as a hang")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    parser.add_argument("--targets", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/cccd-edge-fuzz"), help="where reproducers go")
    parser.add_argument("--pki-dir", type=Path, default=None, help="the simulator's PKI (default: its cache)")
    parser.add_argument("--replay", type=Path, default=None, help="run one reproducer and show what it raises")
    args = parser.parse_args()
    if args.replay is not None:
        return _replay(args.replay, args.pki_dir)
    targets = all_targets()
    if args.targets:
        targets = {name: targets[name] for name in args.targets.split(",")}
    started = time.monotonic()
    corpus = build_corpus(args.pki_dir)
    print(f"corpus: {len(corpus.cards)} simulated cards, {sum(map(len, corpus.samples.values()))} genuine samples, "
          f"built in {time.monotonic() - started:.1f} s")  # fmt: skip
    summary = run_campaign(corpus, list(targets.values()), inputs=args.inputs, seed=args.seed, limit=args.limit,
                           workers=args.workers, out=args.out, progress=True)  # fmt: skip
    print(format_summary(summary, args.out))
    return 0 if not (summary.exceptions or summary.hangs or summary.false_accepts or summary.harness_errors) else 1


if __name__ == "__main__":
    sys.exit(main())
