"""The shared contract suite over every registered family, parametrised from the registry.

A family registered without a case in :mod:`tests.families.contract_cases` fails here, so a new
family is covered as soon as it is registered. Each family's own test module reuses the run made
here (the ``contract_run`` fixture) for its family-specific checks.
"""

from __future__ import annotations

from typing import Callable

import pytest

from medgen_cli.contract.registry import all_specs
from tests.families.contract_cases import CASES

REGISTERED = sorted(all_specs())


@pytest.mark.parametrize("name", REGISTERED)
def test_family_passes_the_contract(name: str, contract_run: Callable[[str], object]) -> None:
    assert name in CASES, (f"family '{name}' is registered but has no contract case: "
                           "add its tiny config to tests/families/contract_cases.py")
    contract_run(name)


def test_every_case_is_a_registered_family() -> None:
    assert sorted(set(CASES) - set(REGISTERED)) == []
