"""Registry: Dassl's semantics (decorator with/without parentheses, duplicate names, helpful lookup errors)."""

from __future__ import annotations

import pytest

from quantprompt.engine.registry import Registry


def test_register_as_decorator_call_and_plain() -> None:
    reg = Registry("THING")

    @reg.register()
    class A:
        pass

    @reg.register
    class B:
        pass

    def c() -> int:
        return 3

    assert reg.register(c) is c
    assert reg.get("A") is A and reg.get("B") is B and reg.get("c") is c
    assert reg.registered_names() == ["A", "B", "c"]
    assert "A" in reg and "Z" not in reg and len(reg) == 3


def test_duplicate_name_raises_unless_forced() -> None:
    reg = Registry("TRAINER")

    class CoOp:
        pass

    reg.register(CoOp)

    class CoOp2:
        pass

    CoOp2.__name__ = "CoOp"
    with pytest.raises(KeyError, match='"CoOp" was already registered in "TRAINER"'):
        reg.register(CoOp2)
    with pytest.raises(KeyError, match="already registered"):
        reg.register()(CoOp2)
    reg.register(CoOp2, force=True)
    assert reg.get("CoOp") is CoOp2
    reg.register(force=True)(CoOp)
    assert reg.get("CoOp") is CoOp


def test_get_unknown_lists_registered_names() -> None:
    reg = Registry("DATASET")

    class Caltech101:
        pass

    class EuroSAT:
        pass

    reg.register(Caltech101)
    reg.register(EuroSAT)
    with pytest.raises(KeyError) as err:
        reg.get("Caltech")
    message = str(err.value)
    assert '"Caltech" does not exist in "DATASET" registry' in message
    assert "Caltech101" in message and "EuroSAT" in message
