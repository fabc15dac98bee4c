import pytest

from polymodal.registry import Registry


def test_register_get_and_describe():
    r = Registry("widget")

    @r.register("b")
    def make_b(x=1):
        """Makes a b."""
        return ("b", x)

    @r.register("a")
    def make_a():
        return "a"

    assert r.names() == ["a", "b"]
    assert r.build("b", x=3) == ("b", 3)
    assert r.describe() == {"a": "", "b": "Makes a b."}
    assert "a" in r and "c" not in r


def test_unknown_name_lists_choices():
    r = Registry("fusion")
    r.register("late")(lambda: None)
    with pytest.raises(KeyError, match="unknown fusion 'lat'; choose one of: late"):
        r.get("lat")


def test_duplicate_registration_rejected():
    r = Registry("x")
    r.register("a")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        r.register("a")(lambda: None)
