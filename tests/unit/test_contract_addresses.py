"""The served result's ``addresses`` name the same citizen fields as the address mapping (two declarations: the
contract's Literal types the OpenAPI document, the mapping's tuple the pages and ``cccd-edge read``)."""

from __future__ import annotations

from typing import get_args

from edge.office.admin_units import ADDRESS_FIELDS
from edge.office.contract import AddressField


def test_the_contracts_address_fields_are_the_mappings() -> None:
    assert get_args(AddressField) == ADDRESS_FIELDS
