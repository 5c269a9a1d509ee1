"""Which new model version takes the ``champion`` alias: the policies ``tracking.champion_if`` names.

Each policy is registered here by name (``CHAMPION_POLICIES``); the config checks ``tracking.champion_if``
against this registry, and ``vibgan.registry.log_generator`` asks ``decide`` for the verdict.
"""

from __future__ import annotations

from collections.abc import Callable

#: a rule: (passed: True/False, or None without a fidelity report; the current champion version or None)
#: -> (crown it?, why)
Rule = Callable[[bool | None, str | None], tuple[bool, str]]
#: name -> rule, in the order the docs list them
CHAMPION_POLICIES: dict[str, Rule] = {}


def policy(name: str):
    """Register a champion rule under ``name``."""
    def register(rule: Rule) -> Rule:
        CHAMPION_POLICIES[name] = rule
        return rule
    return register


def _not_passed(passed: bool | None) -> str:
    return "no fidelity report" if passed is None else "the fidelity report does not pass"


@policy("passed")
def _passed(passed: bool | None, current: str | None) -> tuple[bool, str]:
    return (True, "the fidelity report passes") if passed else (False, _not_passed(passed))


@policy("passed-or-first")
def _passed_or_first(passed: bool | None, current: str | None) -> tuple[bool, str]:
    if passed:
        return True, "the fidelity report passes"
    if current is None:
        return True, ("no champion existed (champion_if=passed-or-first); the fidelity report "
                      + ("was not computed" if passed is None else "does not pass") + ": replace it when one passes")
    return False, _not_passed(passed)


@policy("always")
def _always(passed: bool | None, current: str | None) -> tuple[bool, str]:
    return True, "champion_if=always"


@policy("never")
def _never(passed: bool | None, current: str | None) -> tuple[bool, str]:
    return False, "champion_if=never"


def decide(name: str, passed: bool | None, current: str | None) -> tuple[bool, str]:
    """Whether the new version becomes champion under policy ``name``, and why (one phrase)."""
    return CHAMPION_POLICIES[name](passed, current)
