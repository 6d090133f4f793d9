"""Time evidence: a clock that is not synchronised never fails a genuine card on a date, never passes one the floor
proves expired, and the saved trusted time parses strictly. Real certificates and signatures (tests/support/pki.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import JsonError
from edge.protocol.clock import (
    BUILD_FLOOR,
    TimeEvidence,
    TrustedTime,
    Validity,
    floor_from,
    parse_trusted_time,
)
from edge.protocol.verify.checks import (
    CLOCK_NOT_SYNCHRONISED,
    DS_CHAIN,
    DS_REVOCATION,
    DS_VALIDITY,
    CheckStatus,
    Verdict,
    decide,
)
from edge.protocol.verify.passive import passive_authentication
from edge.protocol.verify.trust import TrustStore
from tests.support.pki import (
    DATA_GROUPS,
    NOW,
    VALID_FROM,
    VALID_TO,
    Pki,
    by_name,
    default_pki,
    der,
    key,
    make_cert,
    make_crl,
    name,
)

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)
FLOOR = dt.datetime(2026, 1, 1, tzinfo=UTC)


def unsynchronised(system_now: dt.datetime = EPOCH, floor: dt.datetime | None = FLOOR) -> TimeEvidence:
    return TimeEvidence.unsynchronised(system_now, floor)


# --- TimeEvidence ------------------------------------------------------------------------------------------------


def test_a_bare_datetime_is_a_trusted_time() -> None:
    evidence = TimeEvidence.of(NOW)
    assert (evidence.now, evidence.synchronised, evidence.source, evidence.evidence_time) == (NOW, True, "ntp", NOW)
    assert TimeEvidence.of(evidence) is evidence


def test_an_unsynchronised_clock_is_never_reported_behind_the_floor() -> None:
    behind = unsynchronised(EPOCH)
    assert (behind.now, behind.synchronised, behind.source, behind.evidence_time) == (FLOOR, False, "none", None)
    ahead = unsynchronised(dt.datetime(2027, 5, 1, tzinfo=UTC))
    assert ahead.now == dt.datetime(2027, 5, 1, tzinfo=UTC)  # the system's word, flagged as such
    assert unsynchronised(EPOCH, None).now == EPOCH


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"now": dt.datetime(2026, 1, 1), "synchronised": True, "source": "ntp"}, "timezone"),
        ({"now": NOW, "synchronised": True, "source": "none"}, "contradicts"),
        ({"now": NOW, "synchronised": False, "source": "office"}, "contradicts"),
        ({"now": NOW, "synchronised": True, "source": "gps"}, "unknown clock source"),
        ({"now": NOW, "synchronised": False, "source": "none", "floor": dt.datetime(2026, 1, 1)}, "timezone"),
    ],
)  # fmt: skip
def test_evidence_that_contradicts_itself_is_a_programming_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TimeEvidence(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("evidence", "not_before", "not_after", "validity"),
    [
        (TimeEvidence.trusted(NOW), VALID_FROM, VALID_TO, Validity.WITHIN),
        (TimeEvidence.trusted(NOW), NOW + dt.timedelta(seconds=1), VALID_TO, Validity.NOT_YET),
        (TimeEvidence.trusted(NOW), VALID_FROM, NOW - dt.timedelta(seconds=1), Validity.EXPIRED),
        # not synchronised: only the floor speaks, and only of expiry
        (unsynchronised(), VALID_FROM, VALID_TO, Validity.UNKNOWN),
        (unsynchronised(), dt.datetime(2030, 1, 1, tzinfo=UTC), VALID_TO, Validity.UNKNOWN),
        (unsynchronised(), VALID_FROM, FLOOR - dt.timedelta(seconds=1), Validity.EXPIRED),
        (unsynchronised(), VALID_FROM, FLOOR, Validity.UNKNOWN),
        (unsynchronised(floor=None), VALID_FROM, dt.datetime(2000, 1, 1, tzinfo=UTC), Validity.UNKNOWN),
    ],
)  # fmt: skip
def test_validity(evidence: TimeEvidence, not_before: dt.datetime, not_after: dt.datetime,
                  validity: Validity) -> None:  # fmt: skip
    assert evidence.validity(not_before, not_after) is validity


# --- the saved trusted time --------------------------------------------------------------------------------------


def test_the_trusted_time_round_trips_and_raises_the_floor() -> None:
    saved = TrustedTime(dt.datetime(2027, 3, 4, 5, 6, 7, tzinfo=UTC), "office")
    assert parse_trusted_time(saved.to_json()) == saved
    assert floor_from(saved) == saved.at
    assert floor_from(None) == BUILD_FLOOR
    assert floor_from(TrustedTime(dt.datetime(2020, 1, 1, tzinfo=UTC), "ntp")) == BUILD_FLOOR  # never lower
    with pytest.raises(ValueError, match="trusted source"):
        TrustedTime(NOW, "none")


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b"null", b'{"trusted_time": "2027-01-01T00:00:00+00:00"}',
     b'{"trusted_time": "2027-01-01T00:00:00+00:00", "source": "none"}',
     b'{"trusted_time": "2027-01-01T00:00:00", "source": "ntp"}',
     b'{"trusted_time": "yesterday", "source": "ntp"}', b'{"trusted_time": 1800000000, "source": "ntp"}',
     b'{"trusted_time": "2027-01-01T00:00:00+00:00", "source": "ntp", "extra": 1}', b"\xff\xfe", b"[" * 300,
     b'{"trusted_time": "' + b"9" * 300 + b'", "source": "ntp"}'],
)  # fmt: skip
def test_a_damaged_trusted_time_is_a_json_error(data: bytes) -> None:
    with pytest.raises(JsonError, match="clock state"):
        parse_trusted_time(data)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_json_error(data: bytes) -> None:
    try:
        parsed = parse_trusted_time(data)
    except JsonError:
        return
    assert parsed.at.tzinfo is not None


# --- passive authentication with a clock that is not synchronised -----------------------------------------------


def test_a_genuine_card_read_in_1970_is_not_failed() -> None:
    """The finding: at 1970 the DS was 'not valid yet' and the verdict failed."""
    pki = default_pki()
    trusted_1970 = by_name(passive_authentication(pki.sod(), DATA_GROUPS, pki.store(), EPOCH))
    assert trusted_1970[DS_VALIDITY].reason == "the Document Signer certificate is not valid yet"  # old behaviour
    checks = passive_authentication(pki.sod(), DATA_GROUPS, pki.store(), unsynchronised())
    named = by_name(checks)
    assert (named[DS_VALIDITY].status, named[DS_VALIDITY].reason) == (CheckStatus.NOT_PERFORMED,
                                                                      CLOCK_NOT_SYNCHRONISED)
    assert named[DS_CHAIN].status is CheckStatus.PASSED  # signatures and names hold; the CSCA's dates are caveated
    assert named[DS_CHAIN].detail["csca_validity"] == "not_performed"
    assert "CSCA validity not performed: clock not synchronised" in named[DS_CHAIN].reason
    assert decide(checks, clock_synchronised=False) is Verdict.VERIFIED
    assert decide(checks) is Verdict.FAILED  # a caller that does not say the clock is off keeps the strict rule


def test_a_genuine_card_read_with_the_clock_in_2020_or_a_year_ahead_is_not_failed() -> None:
    pki = default_pki()
    for system_now in (dt.datetime(2020, 6, 1, tzinfo=UTC), dt.datetime(2035, 6, 1, tzinfo=UTC)):
        checks = passive_authentication(pki.sod(), DATA_GROUPS, pki.store(), unsynchronised(system_now))
        assert by_name(checks)[DS_VALIDITY].reason == CLOCK_NOT_SYNCHRONISED
        assert decide(checks, clock_synchronised=False) is Verdict.VERIFIED


def test_a_ds_that_expired_before_the_floor_fails_whatever_the_clock_says() -> None:
    pki = Pki.create(ds_not_after=dt.datetime(2025, 1, 1, tzinfo=UTC))
    checks = passive_authentication(pki.sod(), DATA_GROUPS, pki.store(), unsynchronised())
    named = by_name(checks)
    assert named[DS_VALIDITY].status is CheckStatus.FAILED
    assert named[DS_VALIDITY].reason.startswith("the Document Signer certificate has expired (before a time")
    assert decide(checks, clock_synchronised=False) is Verdict.FAILED


def test_a_ds_expired_after_the_floor_is_not_judged_without_a_clock_but_fails_with_one() -> None:
    pki = Pki.create(ds_not_after=dt.datetime(2026, 3, 1, tzinfo=UTC), slot=2)
    unsynced = passive_authentication(pki.sod(), DATA_GROUPS, pki.store(), unsynchronised())
    assert by_name(unsynced)[DS_VALIDITY].reason == CLOCK_NOT_SYNCHRONISED
    synced = passive_authentication(pki.sod(), DATA_GROUPS, pki.store(), TimeEvidence.trusted(NOW, "office"))
    assert by_name(synced)[DS_VALIDITY].status is CheckStatus.FAILED
    assert decide(synced, clock_synchronised=True) is Verdict.FAILED


def _pki_under_csca(not_before: dt.datetime, not_after: dt.datetime, slot: int) -> Pki:
    csca_key, ds_key = key("secp256r1", slot), key("secp256r1", slot + 1)
    csca_name = name(f"CSCA CLOCK {slot}")
    csca = make_cert(csca_name, csca_key, csca_name, csca_key, ca=True, not_before=not_before, not_after=not_after)
    ds = make_cert(name(f"DS CLOCK {slot}"), ds_key, csca_name, csca_key, ca=False, serial=7)
    return Pki(csca_key, csca, ds_key, ds)


def test_a_csca_that_expired_before_the_floor_breaks_the_chain_without_a_clock() -> None:
    pki = _pki_under_csca(VALID_FROM, dt.datetime(2025, 6, 1, tzinfo=UTC), slot=20)
    store = TrustStore.from_der([der(pki.csca)])
    checks = by_name(passive_authentication(pki.sod(), DATA_GROUPS, store, unsynchronised()))
    assert checks[DS_CHAIN].status is CheckStatus.FAILED
    assert "valid only from" in checks[DS_CHAIN].reason


def test_a_csca_not_valid_yet_by_the_system_clock_is_not_judged_without_a_clock() -> None:
    pki = _pki_under_csca(dt.datetime(2026, 5, 1, tzinfo=UTC), VALID_TO, slot=22)
    store = TrustStore.from_der([der(pki.csca)])
    synced = by_name(passive_authentication(pki.sod(), DATA_GROUPS, store, dt.datetime(2026, 4, 1, tzinfo=UTC)))
    assert synced[DS_CHAIN].status is CheckStatus.FAILED
    unsynced = by_name(passive_authentication(pki.sod(), DATA_GROUPS, store,
                                              unsynchronised(dt.datetime(2026, 4, 1, tzinfo=UTC))))
    assert unsynced[DS_CHAIN].status is CheckStatus.PASSED


def test_revocation_without_a_clock() -> None:
    pki = default_pki()
    current = TrustStore.from_der([der(pki.csca)], [make_crl(pki, ())])
    named = by_name(passive_authentication(pki.sod(), DATA_GROUPS, current, unsynchronised()))
    assert (named[DS_REVOCATION].status, named[DS_REVOCATION].reason) == (CheckStatus.NOT_PERFORMED,
                                                                          CLOCK_NOT_SYNCHRONISED)
    stale = TrustStore.from_der([der(pki.csca)], [make_crl(pki, (), next_update=dt.datetime(2025, 1, 1, tzinfo=UTC))])
    named = by_name(passive_authentication(pki.sod(), DATA_GROUPS, stale, unsynchronised()))
    assert "out of date" in named[DS_REVOCATION].reason  # the floor proves it
    revoked = TrustStore.from_der([der(pki.csca)], [make_crl(pki, (7,))])
    checks = passive_authentication(pki.sod(), DATA_GROUPS, revoked, unsynchronised())
    assert by_name(checks)[DS_REVOCATION].status is CheckStatus.FAILED  # a revocation needs no clock
    assert decide(checks, clock_synchronised=False) is Verdict.FAILED
