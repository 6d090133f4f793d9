"""Today's administrative units for the old address a card carries (2025 rearrangement), beside the text as read.

Since 2025-07-01 Vietnam has 34 provinces and 3,321 commune-level units and no districts; cards keep the names they
were printed with and stay valid, so the office maps each address (place of residence, place of origin) when it
presents a result, never the terminal: the list can then be updated at the office alone. The signed text is kept as
read; the mapping goes beside it with a confidence:

* ``exact``: the old commune went whole (or with all its residents) into one new unit;
* ``split``: its residents went to several new units: ``candidates`` lists them, none is guessed (the resolutions
  do not say which streets went where);
* ``unknown``: the address names no unit this list knows, or names it ambiguously (``Phường 15`` without its
  district); ``reason`` says which. The new province is still given when the old one was recognised (provinces
  merged whole, Resolution 202/2025/QH15).

Data: ``vietnamadminunits`` (extra ``office``): its SQLite list of the 10,035 commune-level units in force on
2025-06-30 and the 3,321 of 2025-07-01 with their official codes, and its old-to-new table, which lists every
receiving unit of the 471 old units it calls divided. Only those data files are read (through the distribution's
metadata, without importing the package: its code guesses one "default" unit for a divided ward and geocodes
streets online). :mod:`edge.office.admin_unit_corrections` fixes what the resolutions decide otherwise. Every
mapping carries ``data_version`` (package version + corrections version).

An address is resolved right to left (:mod:`edge.office.address_text`): province, then district within it, then
commune within the district. A district that no longer existed on 2025-06-30 (``TP. Huế``, ``Huyện Từ Liêm``)
falls back to the commune's name within the province when that name is unique there. A commune gone before
2025-06-30 (merged in an earlier round) is ``unknown``: this list starts on 2025-06-30.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import sqlite3
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from edge.errors import AdminUnitsDataError
from edge.office.address_text import UnitName, fold, segments, unit_name
from edge.office.admin_unit_corrections import ALL_RESIDENTS, CORRECTIONS_VERSION, LAND_ONLY, NAMESAKE_FIXES

PACKAGE = "vietnamadminunits"
_T = TypeVar("_T")
#: The fields of a result's citizen that hold an address.
ADDRESS_FIELDS = ("place_of_residence", "place_of_origin", "place_of_birth_registration")
EFFECTIVE = "2025-07-01"

#: Province names a card may carry that the list spells otherwise (folded name -> 2-digit code of 2025-06-30).
#: Thừa Thiên Huế became Thành phố Huế on 2025-01-01 (Resolution 1314/NQ-UBTVQH15); cards issued before say so.
_PROVINCE_ALIASES: dict[str, str] = {
    "thua thien hue": "46", "hcm": "79", "tphcm": "79", "tp hcm": "79", "sai gon": "79",
}  # fmt: skip


class Confidence(StrEnum):
    EXACT = "exact"
    SPLIT = "split"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    code: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "code": self.code}


@dataclass(frozen=True, slots=True)
class OldUnits:
    """The units of 2025-06-30 the address was read as (what the card means, with the codes of that date)."""

    province: Unit | None = None
    district: Unit | None = None
    commune: Unit | None = None

    def as_dict(self) -> dict[str, Any]:
        return {level: unit.as_dict() if unit else None
                for level, unit in (("province", self.province), ("district", self.district),
                                    ("commune", self.commune))}  # fmt: skip


@dataclass(frozen=True, slots=True)
class UnitMapping:
    """An address's current units. ``commune`` is set only when ``exact``; ``candidates`` only when ``split``."""

    confidence: Confidence
    data_version: str
    province: Unit | None = None
    commune: Unit | None = None
    candidates: tuple[Unit, ...] = ()
    old: OldUnits = field(default_factory=OldUnits)
    reason: str = ""
    sources: tuple[str, ...] = ()  # resolution clauses behind a corrected entry

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "confidence": self.confidence.value,
            "province": self.province.as_dict() if self.province else None,
            "commune": self.commune.as_dict() if self.commune else None,
            "candidates": [unit.as_dict() for unit in self.candidates],
            "old": self.old.as_dict(),
            "data_version": self.data_version,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.sources:
            out["sources"] = list(self.sources)
        return out


@dataclass(frozen=True, slots=True)
class _Old:
    code: str
    kind: str  # folded type
    name: str  # folded name
    label: str  # as the list writes it


@dataclass(frozen=True, slots=True)
class _District:
    unit: _Old
    province: str
    communes: tuple[_Old, ...]


class AdminUnits:
    """The old-to-new table, loaded once from the package's data files; :meth:`map_address` is pure."""

    def __init__(self, *, version: str, provinces: Mapping[str, _Old], districts: Mapping[str, _District],
                 receivers: Mapping[str, tuple[str, ...]], island_districts: Mapping[str, str],
                 new_units: Mapping[str, Unit], new_province_of_unit: Mapping[str, str],
                 new_province_of_old: Mapping[str, str], new_provinces: Mapping[str, Unit],
                 sources: Mapping[str, tuple[str, ...]]) -> None:  # fmt: skip
        self.data_version = f"{PACKAGE} {version} + corrections {CORRECTIONS_VERSION} (units of {EFFECTIVE})"
        self._provinces = provinces
        self._districts = districts
        self._receivers = receivers
        self._islands = island_districts
        self._new_units = new_units
        self._new_province_of_unit = new_province_of_unit
        self._new_province_of_old = new_province_of_old
        self._new_provinces = new_provinces
        self._sources = sources
        by_province: dict[str, list[_District]] = defaultdict(list)
        for district in districts.values():
            by_province[district.province].append(district)
        self._districts_of = {code: tuple(found) for code, found in by_province.items()}
        self._province_names: dict[str, str] = {}
        for code, province in provinces.items():
            self._province_names[province.name] = code
        self._province_names.update(_PROVINCE_ALIASES)

    @classmethod
    def load(cls) -> AdminUnits:
        """Read the installed package's data; :class:`AdminUnitsDataError` if it is absent or not as expected."""
        try:
            distribution = importlib.metadata.distribution(PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            raise AdminUnitsDataError(f"{PACKAGE} is not installed") from None
        database = Path(str(distribution.locate_file(f"{PACKAGE}/data/dataset.db")))
        converter = Path(str(distribution.locate_file(f"{PACKAGE}/data/converter_2025.json")))
        try:
            table = json.loads(converter.read_text(encoding="utf-8"))
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                old_rows = connection.execute(
                    "SELECT provinceCode, province, provinceShort, provinceKey, districtCode, district, districtType,"
                    " districtShort, districtKey, wardCode, ward, wardType, wardShort, wardKey FROM admin_units_legacy"
                ).fetchall()
                new_rows = connection.execute(
                    "SELECT provinceCode, province, provinceKey, wardCode, ward, wardKey FROM admin_units").fetchall()
            return _build(distribution.version, old_rows, new_rows, table)
        except (OSError, sqlite3.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AdminUnitsDataError(f"{PACKAGE} {distribution.version}: unreadable data ({exc})") from None

    def map_address(self, address: str) -> UnitMapping:
        """The current units of ``address`` (any text: the worst is ``unknown``)."""
        parts = list(segments(address))
        names = [unit_name(part) for part in parts]
        province = self._province(names[-1]) if names else None
        if province is not None:
            names.pop()
        district = None
        if names and names[-1].level in ("d", "dp"):
            district = self._district(names[-1], province)
            names.pop()  # a district the list lacks (gone before 2025-06-30) still is not the commune
        elif names and names[-1].kind is None:
            district = self._district(names[-1], province)
            if district is not None:
                names.pop()
        if district is not None:
            province = district.province
        old_province = self._provinces.get(province) if province else None
        new_province = self._new_province(province)
        old = OldUnits(_unit(old_province), _unit(district.unit if district else None))
        if province is None:
            return self._unknown(old, None, "no province or district of 2025-06-30 recognised in the address")
        if district is not None and district.unit.code in self._islands:
            code = self._islands[district.unit.code]  # an island district without communes: now a special zone
            return UnitMapping(Confidence.EXACT, self.data_version, new_province, self._new_units[code], old=old)
        commune, why = self._commune(names, district, province)
        if commune is None:
            return self._unknown(old, new_province, why)
        old = OldUnits(old.province, old.district, _unit(commune))
        return self._mapped(commune.code, old, new_province)

    def _mapped(self, old_code: str, old: OldUnits, province: Unit | None) -> UnitMapping:
        receivers = self._receivers.get(old_code, ())
        units = tuple(self._new_units[code] for code in receivers)
        sources = self._sources.get(old_code, ())
        if units:
            province = self._new_provinces[self._new_province_of_unit[receivers[0]]]
        if len(units) == 1:
            return UnitMapping(Confidence.EXACT, self.data_version, province, units[0], old=old, sources=sources)
        if units:
            return UnitMapping(Confidence.SPLIT, self.data_version, province, None, units, old=old,
                               reason=f"the old unit's residents went to {len(units)} units; the street decides",
                               sources=sources)  # fmt: skip
        return self._unknown(old, province, "the old unit has no receiving unit in the list")

    def _unknown(self, old: OldUnits, province: Unit | None, reason: str) -> UnitMapping:
        return UnitMapping(Confidence.UNKNOWN, self.data_version, province, old=old, reason=reason)

    def _new_province(self, old_code: str | None) -> Unit | None:
        new_code = self._new_province_of_old.get(old_code) if old_code else None
        return self._new_provinces.get(new_code) if new_code else None

    def _province(self, name: UnitName) -> str | None:
        if "p" not in name.level:
            return None
        return self._province_names.get(name.name) or self._province_names.get(fold(name.text))

    def _district(self, name: UnitName, province: str | None) -> _District | None:
        if "d" not in name.level:
            return None
        pool = self._districts_of.get(province, ()) if province else tuple(self._districts.values())
        return _pick([(district.unit, district) for district in pool], name)

    def _commune(self, names: list[UnitName], district: _District | None,
                 province: str) -> tuple[_Old | None, str]:  # fmt: skip
        if not names or "c" not in names[-1].level or names[-1].level == "dp":
            return None, "no commune, ward or township named before the district and province"
        name = names[-1]
        if district is not None:  # the district decides: a namesake elsewhere in the province is another place
            found = _pick([(commune, commune) for commune in district.communes], name)
            if found is not None:
                return found, ""
            return None, "no unit of that name in the district on 2025-06-30 (gone in an earlier rearrangement?)"
        # The district is missing, or gone before 2025-06-30: the name alone, if the province has one such unit.
        pool = [commune for district in self._districts_of.get(province, ()) for commune in district.communes]
        matches = {commune.code: commune for commune in pool if _same(commune, name, typed=True)} or \
            {commune.code: commune for commune in pool if _same(commune, name, typed=False)}
        if len(matches) == 1:
            return next(iter(matches.values())), ""
        if matches:
            return None, f"{len(matches)} units of that name in the province: the district is needed"
        return None, "no unit of that name in the province on 2025-06-30 (gone in an earlier rearrangement?)"


def _same(unit: _Old, name: UnitName, *, typed: bool) -> bool:
    return unit.name == name.name and (not typed or name.kind is None or unit.kind == name.kind)


def _pick(pool: list[tuple[_Old, _T]], name: UnitName) -> _T | None:
    """The one unit of ``pool`` that ``name`` names: type and name, else the name alone (a "Xã" since made a
    "Phường" keeps its name); ``None`` when none or several match."""
    for typed in (True, False):
        found = [item for unit, item in pool if _same(unit, name, typed=typed)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            return None
    return None


def _unit(old: _Old | None) -> Unit | None:
    return Unit(old.label, old.code) if old is not None else None


def _split_type(label: str, kind: str | None) -> tuple[str, str]:
    """(folded type, folded name) of a unit's full name from the list (``"Quận 1"`` -> ``("quan", "1")``)."""
    folded_kind = fold(kind or "")
    folded = fold(label)
    if folded_kind and folded.startswith(folded_kind + " "):
        return folded_kind, folded[len(folded_kind) + 1:]
    return unit_name(label).kind or "", unit_name(label).name


def _build(version: str, old_rows: list[tuple[Any, ...]], new_rows: list[tuple[Any, ...]],
           table: dict[str, Any]) -> AdminUnits:  # fmt: skip
    provinces: dict[str, _Old] = {}
    districts: dict[str, tuple[_Old, str, list[_Old]]] = {}
    old_by_key: dict[tuple[str, str, str], str] = {}
    province_of_key: dict[str, str] = {}
    island_keys: dict[tuple[str, str], str] = {}
    for (p_code, p_label, p_short, p_key, d_code, d_label, d_type, _d_short, d_key, w_code, w_label, w_type,
         _w_short, w_key) in old_rows:  # fmt: skip
        provinces.setdefault(p_code, _Old(p_code, "", fold(p_short), p_label))
        province_of_key[p_key] = p_code
        kind, name = _split_type(d_label, d_type)
        entry = districts.setdefault(d_code, (_Old(d_code, kind, name, d_label), p_code, []))
        if w_code is None:
            island_keys[(p_key, d_key)] = d_code
            continue
        kind, name = _split_type(w_label, w_type)
        entry[2].append(_Old(w_code, kind, name, w_label))
        old_by_key[(p_key, d_key, w_key)] = w_code
    new_units: dict[str, Unit] = {}
    new_by_key: dict[tuple[str, str], str] = {}
    new_province_of_unit: dict[str, str] = {}
    new_provinces: dict[str, Unit] = {}
    new_province_of_key: dict[str, str] = {}
    for p_code, p_label, p_key, w_code, w_label, w_key in new_rows:
        new_units[w_code] = Unit(w_label, w_code)
        new_by_key[(p_key, w_key)] = w_code
        new_province_of_unit[w_code] = p_code
        new_provinces[p_code] = Unit(p_label, p_code)
        new_province_of_key[p_key] = p_code
    new_province_of_old = {province_of_key[old_key]: new_province_of_key[new_key]
                           for new_key, old_keys in table["DICT_PROVINCE"].items() for old_key in old_keys}

    def old_code(key: str) -> tuple[str, str, str]:
        p_key, d_key, w_key = key.split("_")
        return p_key, d_key, w_key

    receivers: dict[str, tuple[str, ...]] = {}
    islands: dict[str, str] = {}
    for new_province, wards in table["DICT_PROVINCE_WARD_NO_DIVIDED"].items():
        for new_key, old_keys in wards.items():
            new_code = new_by_key[(new_province, new_key)]
            for key in old_keys:
                p_key, d_key, w_key = old_code(key)
                if not w_key:
                    islands[island_keys[(p_key, d_key)]] = new_code
                    continue
                receivers[old_by_key[(p_key, d_key, w_key)]] = (new_code,)
    for new_province, divided in table["DICT_PROVINCE_WARD_DIVIDED"].items():
        for key, targets in divided.items():
            codes = {new_by_key[(new_province, target["newWardKey"])] for target in targets
                     if (new_province, target["newWardKey"]) in new_by_key}  # fmt: skip
            receivers[old_by_key[old_code(key)]] = tuple(sorted(codes))
    sources = _apply_corrections(receivers)
    return AdminUnits(
        version=version, provinces=provinces,
        districts={code: _District(unit, province, tuple(communes))
                   for code, (unit, province, communes) in districts.items()},
        receivers=receivers, island_districts=islands, new_units=new_units,
        new_province_of_unit=new_province_of_unit, new_province_of_old=new_province_of_old,
        new_provinces=new_provinces, sources=sources,
    )  # fmt: skip


def _code(number: int) -> str:
    return f"{number:05d}"


def _apply_corrections(receivers: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Apply :mod:`edge.office.admin_unit_corrections` in place; the clauses behind each corrected old unit."""
    sources: dict[str, list[str]] = defaultdict(list)
    for old, (new, clause) in NAMESAKE_FIXES.items():
        receivers[_code(old)] = tuple(_code(code) for code in new)
        sources[_code(old)].append(clause)
    for old, land, clause in LAND_ONLY:
        kept = tuple(code for code in receivers.get(_code(old), ()) if code != _code(land))
        receivers[_code(old)] = kept
        sources[_code(old)].append(f"{clause} (land only to {_code(land)})")
    for old, (new_code, clause) in ALL_RESIDENTS.items():
        receivers[_code(old)] = (_code(new_code),)
        sources[_code(old)].append(f"{clause} (all residents)")
    return {code: tuple(found) for code, found in sources.items()}


@functools.cache
def default_units() -> AdminUnits:
    """The installed package's table, loaded on first use (about half a second) and kept."""
    return AdminUnits.load()


def map_address(address: str, units: AdminUnits | None = None) -> UnitMapping:
    """:meth:`AdminUnits.map_address` with the installed data; ``unknown`` (with why) when it cannot be loaded."""
    if units is None:
        try:
            units = default_units()
        except AdminUnitsDataError as exc:
            return UnitMapping(Confidence.UNKNOWN, "unavailable", reason=f"{exc} ({exc.hint})")
    return units.map_address(address)


def map_addresses(citizen: Mapping[str, Any], units: AdminUnits | None = None) -> dict[str, dict[str, Any]]:
    """Each address of a result's citizen data as read, with its mapping: ``{field: {as_read, mapping}}``."""
    return {name: {"as_read": citizen[name], "mapping": map_address(citizen[name], units).as_dict()}
            for name in ADDRESS_FIELDS if isinstance(citizen.get(name), str)}  # fmt: skip


def confidences(citizen: Mapping[str, Any], units: AdminUnits | None = None) -> dict[str, str]:
    """Only each address's confidence: what a non-personal line may say (the units would reveal the address)."""
    return {name: mapped["mapping"]["confidence"] for name, mapped in map_addresses(citizen, units).items()}
