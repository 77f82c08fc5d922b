"""Finding targets: installed packages register them under the ``byoc.targets`` entry point.

An entry point names a :class:`~byoc_sdk.target.Target` object, or a callable without
arguments that returns one. Targets made in-process (tests, notebooks) can be added
with :func:`register_target`. The bundled targets register the same way as a vendor's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from byoc_sdk.errors import TargetError
from byoc_sdk.target import Target

ENTRY_POINT_GROUP = "byoc.targets"

_lock = threading.Lock()
_loaded: dict[str, Target] = {}
_registered: dict[str, Target] = {}


def _entry_points() -> dict[str, list[EntryPoint]]:
    """Entry points by target name. Two that point at different objects under one name
    are a conflict :func:`get_target` reports; the same one listed twice (an editable
    install beside an old build's metadata) is one."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        same_name = found.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same_name):
            same_name.append(ep)
    return found


def _provider(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return f"{dist.name if dist is not None else 'a package'} ({entry.value})"


def target_names() -> list[str]:
    """Names of every target that can be loaded, sorted."""
    return sorted(set(_entry_points()) | set(_registered))


def register_target(target: Target, *, replace: bool = False) -> Target:
    """Make an in-process target available by name."""
    with _lock:
        if not replace and target.name in _registered:
            raise TargetError("a target of this name is already registered", target=target.name)
        _registered[target.name] = target
        _loaded.pop(target.name, None)
    return target


def unregister_target(name: str) -> None:
    """Forget an in-process target (the entry-point one, if any, shows again)."""
    with _lock:
        _registered.pop(name, None)
        _loaded.pop(name, None)


def get_target(name: str) -> Target:
    """The target called ``name``, loading its package on first use."""
    with _lock:
        if name in _registered:
            return _registered[name]
        if name in _loaded:
            return _loaded[name]
    entries = _entry_points().get(name)
    if not entries:
        known = ", ".join(target_names()) or "none"
        raise TargetError(f"unknown target; installed targets: {known}", target=name)
    if len(entries) > 1:
        # Which one wins would depend on install order: refuse rather than guess.
        providers = " and ".join(_provider(e) for e in entries)
        raise TargetError(f"{len(entries)} installed packages register a target of this name: "
                          f"{providers}; uninstall one, or rename its target", target=name)
    target = _load(entries[0])
    with _lock:
        _loaded[name] = target
    return target


def _load(entry: EntryPoint) -> Target:
    try:
        obj = entry.load()
        target = obj() if callable(obj) and not isinstance(obj, Target) else obj
    except Exception as exc:  # a vendor package can fail in any way while importing
        raise TargetError(
            f"entry point '{entry.value}' failed to load: {type(exc).__name__}: {exc}",
            target=entry.name,
        ) from exc
    if not isinstance(target, Target):
        raise TargetError(
            f"entry point '{entry.value}' gave {type(target).__name__}, not a byoc_sdk.Target",
            target=entry.name,
        )
    if target.name != entry.name:
        raise TargetError(
            f"entry point '{entry.name}' loads a target named '{target.name}'",
            target=entry.name,
        )
    return target


def resolve_targets(targets: Iterable[Target | str]) -> list[Target]:
    """Targets by name or object, in priority order (highest first, then as given)."""
    resolved = [t if isinstance(t, Target) else get_target(t) for t in targets]
    names = [t.name for t in resolved]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise TargetError("target given more than once", target=", ".join(sorted(duplicates)))
    return sorted(resolved, key=lambda t: -t.priority)
