"""webhook/ and agent/ agree with docs/contract.md, the only thing they share."""

import re
from pathlib import Path
from types import ModuleType
from typing import Literal, get_args, get_origin

import pytest

from agent import contract as agent_contract
from webhook import contract as webhook_contract

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
ROW = re.compile(r"^\| ([A-Z][A-Z0-9_]+) \| `([^`]+)` \|", re.MULTILINE)
BACKTICKED = re.compile(r"`([^`]+)`")
# The Literal types each copy defines, and the tuple of values derived from each.
LITERAL_TYPES = {"Slot": "SLOTS", "AgentPhase": "PHASES", "AgentRole": "ROLES"}


def documented_constants() -> dict[str, str]:
    """Every `| CONSTANT | `value` |` row of the contract's tables."""
    rows = dict(ROW.findall(DOC.read_text()))
    assert len(rows) >= 30, "the contract tables were not parsed"
    return rows


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


@pytest.mark.parametrize("module", [agent_contract, webhook_contract], ids=["agent", "webhook"])
def test_every_documented_constant_matches(module: ModuleType) -> None:
    for name, value in documented_constants().items():
        assert hasattr(module, name), f"{module.__name__} lacks {name}"
        assert str(getattr(module, name)) == value, f"{module.__name__}.{name} != {value}"


def test_both_copies_define_the_same_names_and_values() -> None:
    def public(module: ModuleType) -> dict[str, object]:
        return {k: v for k, v in vars(module).items() if k.isupper()}

    assert public(agent_contract) == public(webhook_contract)


def test_post_start_hook_is_the_documented_one() -> None:
    hook = section("Images and hooks")
    command = agent_contract.POST_START_COMMAND
    assert f"{command[0]} {command[1]} '{command[2]}'" in hook


def test_status_fields_phases_and_roles_are_documented() -> None:
    status = section("Agent status")
    fields = re.findall(r"^\| `([A-Za-z_]+)` \|", status, re.MULTILINE)
    assert tuple(fields) == agent_contract.STATUS_FIELDS
    phase_row = next(line for line in status.splitlines() if line.startswith("| `phase`"))
    assert tuple(BACKTICKED.findall(phase_row)[1:]) == agent_contract.PHASES
    role_row = next(line for line in status.splitlines() if line.startswith("| `role`"))
    assert tuple(BACKTICKED.findall(role_row)[1:]) == agent_contract.ROLES
    slot_row = next(line for line in status.splitlines() if line.startswith("| `slot`"))
    assert tuple(BACKTICKED.findall(slot_row)[1:]) == agent_contract.SLOTS


@pytest.mark.parametrize("module", [agent_contract, webhook_contract], ids=["agent", "webhook"])
def test_slots_phases_and_roles_are_literal_types_with_their_tuples_derived(module: ModuleType) -> None:
    for type_name, tuple_name in LITERAL_TYPES.items():
        literal = getattr(module, type_name)
        assert get_origin(literal) is Literal, f"{module.__name__}.{type_name} is not a Literal"
        assert get_args(literal) == getattr(module, tuple_name), f"{module.__name__}.{type_name}"


def test_both_copies_define_the_same_literal_types() -> None:
    for type_name in LITERAL_TYPES:
        assert get_args(getattr(agent_contract, type_name)) == get_args(getattr(webhook_contract, type_name))
    documented = section("Agent status")
    for type_name in LITERAL_TYPES:
        assert f"`{type_name}`" in documented, f"docs/contract.md does not name {type_name}"
