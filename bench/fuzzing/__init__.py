"""The fuzzing harness behind ``bench/fuzz.py``: structure-aware mutation, the genuine samples it starts from, the
targets (parsers, verifiers and a hostile card), and a multi-process runner with a watchdog per input.

A package beside the bench scripts rather than a script of its own, so that ``make bench`` (which runs every
``bench/*.py``) runs the campaign once and ``tests/unit/test_fuzz_harness.py`` runs a short one of the same code.
"""
