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


# ------------------------------------------------------------------------------------------- UnknownNameError
def test_unknown_name_error_is_a_key_error_and_a_polymodal_error_with_a_clean_message():
    from polymodal.errors import PolymodalError, UnknownNameError

    r = Registry("fusion")
    for name in ("late", "concat", "transformer"):
        r.register(name)(lambda: None)
    with pytest.raises(UnknownNameError) as info:
        r.build("transfomer")
    e = info.value
    assert isinstance(e, KeyError) and isinstance(e, PolymodalError)
    assert str(e) == (
        "unknown fusion 'transfomer'; choose one of: concat, late, transformer. Did you mean 'transformer'?"
    )
    assert e.kind == "fusion" and e.name == "transfomer" and e.choices == ["concat", "late", "transformer"]
    assert e.suggestions == ["transformer"]
    with pytest.raises(UnknownNameError) as info:
        r.get("zzz")
    assert "Did you mean" not in str(info.value) and str(info.value).startswith("unknown fusion 'zzz'")


def test_unknown_name_error_survives_pickling():
    import pickle

    from polymodal.errors import UnknownNameError

    e = pickle.loads(pickle.dumps(UnknownNameError("encoder", "imag", ["image_conv", "image"])))
    assert str(e) == "unknown encoder 'imag'; choose one of: image, image_conv. Did you mean 'image'?"
    assert isinstance(e, UnknownNameError) and e.choices == ["image", "image_conv"]


# ------------------------------------------------------------------------------------------------ Component
def test_component_of_coerces_names_mappings_and_components():
    from polymodal.registry import Component

    assert Component.of("late") == Component("late") == Component("late", {})
    c = Component.of({"name": "transformer", "options": {"layers": 2}})
    assert c == Component("transformer", {"layers": 2}) and Component.of(c) is c
    assert Component.of({"name": "late"}) == Component("late") == Component.of({"name": "late", "options": None})
    assert c.to_dict() == {"name": "transformer", "options": {"layers": 2}}
    assert Component.of(c.to_dict()) == c
    assert hash(Component("a", {"x": [1], "y": {"z": 2}})) == hash(Component("a", {"y": {"z": 2}, "x": [1]}))
    opts = {"layers": 2}
    d = Component("t", opts)
    opts["layers"] = 3
    assert d.options == {"layers": 2}  # copied on construction
    d.to_dict()["options"]["layers"] = 4
    assert d.options == {"layers": 2}


@pytest.mark.parametrize(
    "bad,match",
    [
        (3, "expected a component"),
        (None, "expected a component"),
        ({"options": {}}, "no 'name'"),
        ({"name": "late", "layers": 2}, "unknown keys \\['layers'\\]"),
        ({"name": "late", "options": [1]}, "must be a mapping"),
        ({"name": ""}, "non-empty string"),
        ({"name": 5}, "non-empty string"),
    ],
)
def test_component_of_refuses_other_values_with_a_clear_message(bad, match):
    from polymodal.errors import ComponentError, PolymodalError
    from polymodal.registry import Component

    with pytest.raises(ComponentError, match=match) as info:
        Component.of(bad)
    assert isinstance(info.value, PolymodalError) and isinstance(info.value, TypeError)
    assert isinstance(info.value, ValueError)


def test_build_component_passes_options_and_lets_keywords_override():
    from polymodal.errors import UnknownNameError
    from polymodal.registry import Component

    r = Registry("widget")
    r.register("w")(lambda *args, size=1, colour="red": (args, size, colour))
    assert r.build_component(Component("w", {"size": 3}), "a") == (("a",), 3, "red")
    assert r.build_component({"name": "w", "options": {"size": 3}}, colour="blue") == ((), 3, "blue")
    assert r.build_component(Component("w", {"size": 3}), size=5) == ((), 5, "red")
    assert r.build_component("w") == ((), 1, "red")
    with pytest.raises(UnknownNameError, match="unknown widget 'x'"):
        r.build_component(Component("x"))
