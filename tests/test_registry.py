"""Specification of the target registry: in-process targets and ``byoc.targets`` entry points."""

from __future__ import annotations

import itertools
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from byoc_sdk import registry
from byoc_sdk.errors import TargetError
from byoc_sdk.registry import (
    ENTRY_POINT_GROUP,
    get_target,
    register_target,
    resolve_targets,
    target_names,
    unregister_target,
)
from byoc_sdk.target import Target

BUNDLED = ("cpu", "cuda", "simaccel")

_counter = itertools.count()


@pytest.fixture
def unique_name():
    """A fresh target name, forgotten by the registry after the test."""
    names: list[str] = []

    def make() -> str:
        name = f"regtest_{next(_counter)}"
        names.append(name)
        return name

    yield make
    for name in names:
        unregister_target(name)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Install fake ``byoc.targets`` entry points backed by a module written to tmp_path.

    ``plugin(source, name=...)`` writes ``source`` as a fresh module and adds the entry
    point ``name = module:attr`` (``attr`` defaults to ``target``), returning ``(name,
    value)``; the registry then sees exactly the entry points made so far. Combine it
    with ``unique_name`` so the registry forgets the loaded targets afterwards.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    entries: dict[str, list[EntryPoint]] = {}
    modules: list[str] = []
    monkeypatch.setattr(registry, "_entry_points", lambda: dict(entries))

    def make(source: str, *, name: str, attr: str = "target") -> tuple[str, str]:
        module = f"byoc_test_plugin_{name}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        modules.append(module)
        value = f"{module}:{attr}"
        entries[name] = [EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)]
        return name, value

    yield make
    for module in modules:
        sys.modules.pop(module, None)


# --- in-process registration ----------------------------------------------------------------


def test_registered_target_is_found_by_name(unique_name):
    target = Target(unique_name())

    assert register_target(target) is target
    assert get_target(target.name) is target


def test_registered_target_is_listed_among_target_names(unique_name):
    target = register_target(Target(unique_name()))

    names = target_names()

    assert target.name in names
    assert names == sorted(names)


def test_unregistered_target_is_no_longer_found(unique_name):
    target = register_target(Target(unique_name()))

    unregister_target(target.name)

    assert target.name not in target_names()
    with pytest.raises(TargetError, match="unknown target"):
        get_target(target.name)


def test_unregistering_an_unknown_name_does_nothing():
    unregister_target("never_registered_anywhere")


def test_registering_a_second_target_of_the_same_name_is_refused(unique_name):
    name = unique_name()
    first = register_target(Target(name))

    with pytest.raises(TargetError) as caught:
        register_target(Target(name))

    assert "already registered" in str(caught.value)
    assert caught.value.context.target == name
    assert get_target(name) is first


def test_registering_with_replace_swaps_the_target(unique_name):
    name = unique_name()
    register_target(Target(name, version="1"))
    second = register_target(Target(name, version="2"), replace=True)

    assert get_target(name) is second


def test_unknown_target_error_names_it_and_lists_installed_targets():
    with pytest.raises(TargetError) as caught:
        get_target("nosuch")

    message = str(caught.value)
    assert caught.value.context.target == "nosuch"
    assert "unknown target" in message
    assert "installed targets: " + ", ".join(target_names()) in message
    for name in BUNDLED:
        assert name in message


def test_registered_target_shadows_a_bundled_one_until_unregistered():
    bundled = get_target("cpu")
    mine = Target("cpu", description="in-process stand-in")
    register_target(mine)
    try:
        assert get_target("cpu") is mine
    finally:
        unregister_target("cpu")

    again = get_target("cpu")
    assert again is not mine
    assert again.name == "cpu"
    assert again.description == bundled.description


# --- resolve_targets ------------------------------------------------------------------------


def test_resolve_targets_sorts_by_priority_highest_first(unique_name):
    low = Target(unique_name(), priority=1)
    high = Target(unique_name(), priority=10)
    middle = Target(unique_name(), priority=5)

    assert resolve_targets([low, high, middle]) == [high, middle, low]


def test_resolve_targets_keeps_the_given_order_between_equal_priorities(unique_name):
    first = Target(unique_name(), priority=3)
    second = Target(unique_name(), priority=3)

    assert resolve_targets([first, second]) == [first, second]
    assert resolve_targets([second, first]) == [second, first]


def test_resolve_targets_takes_names_and_objects(unique_name):
    registered = register_target(Target(unique_name(), priority=7))
    loose = Target(unique_name(), priority=2)

    assert resolve_targets([loose, registered.name]) == [registered, loose]


def test_resolve_targets_orders_the_bundled_targets_by_priority():
    resolved = resolve_targets(["cpu", "simaccel", "cuda"])

    assert [t.name for t in resolved] == sorted(
        ["cpu", "simaccel", "cuda"], key=lambda n: -get_target(n).priority
    )


def test_resolve_targets_refuses_a_target_given_twice(unique_name):
    target = register_target(Target(unique_name()))

    with pytest.raises(TargetError) as caught:
        resolve_targets([target, target.name])

    assert "more than once" in str(caught.value)
    assert caught.value.context.target == target.name


def test_resolve_targets_reports_an_unknown_name():
    with pytest.raises(TargetError, match="unknown target"):
        resolve_targets(["nosuch"])


# --- bundled targets ------------------------------------------------------------------------


def test_bundled_targets_are_listed():
    assert set(BUNDLED) <= set(target_names())


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_target_loads_from_its_entry_point_as_a_target_of_that_name(name):
    target = get_target(name)

    assert isinstance(target, Target)
    assert target.name == name
    assert target.ops, f"{name} declares no ops"


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_target_is_loaded_once_and_reused(name):
    assert get_target(name) is get_target(name)


# --- entry points ---------------------------------------------------------------------------


def test_entry_point_naming_a_target_object_loads_it(plugin, unique_name):
    name = unique_name()
    plugin(f"from byoc_sdk import Target\ntarget = Target({name!r}, version='9.9')\n", name=name)

    target = get_target(name)

    assert isinstance(target, Target)
    assert (target.name, target.version) == (name, "9.9")
    assert name in target_names()


def test_entry_point_naming_a_factory_calls_it(plugin, unique_name):
    name = unique_name()
    plugin(
        f"""
        from byoc_sdk import Target

        def make():
            return Target({name!r}, version="factory")
        """,
        name=name,
        attr="make",
    )

    assert get_target(name).version == "factory"


def test_entry_point_whose_module_raises_on_import_is_a_target_error(plugin, unique_name):
    name = unique_name()
    _, value = plugin("raise RuntimeError('vendor SDK not installed')\n", name=name)

    with pytest.raises(TargetError) as caught:
        get_target(name)

    message = str(caught.value)
    assert caught.value.context.target == name
    assert f"entry point '{value}' failed to load" in message
    assert "RuntimeError: vendor SDK not installed" in message


def test_entry_point_whose_factory_raises_is_a_target_error(plugin, unique_name):
    name = unique_name()
    plugin("def make():\n    raise ValueError('no licence')\n", name=name, attr="make")

    with pytest.raises(TargetError, match="failed to load: ValueError: no licence"):
        get_target(name)


def test_entry_point_giving_something_other_than_a_target_is_a_target_error(
    plugin, unique_name
):
    name = unique_name()
    _, value = plugin("target = 42\n", name=name)

    with pytest.raises(TargetError) as caught:
        get_target(name)

    assert caught.value.context.target == name
    assert f"entry point '{value}' gave int, not a byoc_sdk.Target" in str(caught.value)


def test_entry_point_loading_a_target_of_another_name_is_a_target_error(plugin, unique_name):
    name = unique_name()
    plugin("from byoc_sdk import Target\ntarget = Target('somebody_else')\n", name=name)

    with pytest.raises(TargetError) as caught:
        get_target(name)

    assert caught.value.context.target == name
    assert f"entry point '{name}' loads a target named 'somebody_else'" in str(caught.value)


def test_broken_entry_point_does_not_hide_the_others(plugin, unique_name):
    good = unique_name()
    plugin(f"from byoc_sdk import Target\ntarget = Target({good!r})\n", name=good)
    bad = unique_name()
    plugin("target = None\n", name=bad)

    assert {good, bad} <= set(target_names())
    assert get_target(good).name == good
    with pytest.raises(TargetError):
        get_target(bad)


# --- two packages, one name -------------------------------------------------------------


def _installed(monkeypatch, *values: str, name: str) -> None:
    """Entry points ``name = value`` for each value, as importlib.metadata lists them."""
    points = [EntryPoint(name=name, value=v, group=ENTRY_POINT_GROUP) for v in values]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)


def test_two_packages_registering_one_name_is_an_error_naming_both(monkeypatch, unique_name):
    name = unique_name()
    _installed(monkeypatch, "first_pkg:target", "second_pkg:target", name=name)
    with pytest.raises(TargetError, match="2 installed packages register") as caught:
        get_target(name)
    assert "first_pkg:target" in str(caught.value) and "second_pkg:target" in str(caught.value)
    assert name in target_names()  # listed, so `byoc targets` shows the conflict


def test_one_entry_point_listed_twice_is_one_target(monkeypatch, tmp_path, unique_name):
    name = unique_name()
    module = f"byoc_test_twice_{name}"
    (tmp_path / f"{module}.py").write_text(
        f"from byoc_sdk import Target\ntarget = Target({name!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _installed(monkeypatch, f"{module}:target", f"{module}:target", name=name)
    try:
        assert get_target(name).name == name
    finally:
        sys.modules.pop(module, None)
