"""`Registry`: named plug-ins (domains, critics, estimators, learner presets) and how they are found.

Each extension point of the library keeps one registry. A plug-in arrives in one of three ways:

* ``registry.register(cls)`` from Python (a notebook, a test, a package's import);
* an entry point of any installed package, in the registry's group, e.g. in its
  ``pyproject.toml``::

      [project.entry-points."guidedmarl.estimators"]
      my_estimator = "my_package.estimators:MyEstimator"

* for domains only, ``module:Class`` or ``path/to/file.py:Class`` given as the name (see
  :func:`guidedmarl.domain.get_domain`), so an idea can be tried without packaging.

An unknown name is a :class:`~guidedmarl.errors.ConfigError` that lists what is available and
suggests the closest name.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

from guidedmarl.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or an empty string."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def load_module(target: str) -> ModuleType:
    """Import ``target``: a module name (``my_pkg.mod``) or a Python file (``path/to/file.py``).

    Importing a plug-in module runs its registrations (``register_estimator(...)`` etc.), so
    ``guidedmarl run --plugin FILE`` makes what the file defines available by name. A file is
    imported once per path. Failures are a :class:`ConfigError` naming the target.
    """
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ConfigError(f"plug-in file not found: {path}")
            name = f"guidedmarl_plugin_{path.resolve().stem}_{abs(hash(str(path.resolve())))}"
            if name in sys.modules:
                return sys.modules[name]
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        return importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as exc:  # the user's module failed to import
        raise ConfigError(f"cannot import {target}: {exc!r}") from exc


def _same_definition(a: object, b: object) -> bool:
    """Two classes defined by the same source (same file and qualified name)."""
    if not (isinstance(a, type) and isinstance(b, type)) or a.__qualname__ != b.__qualname__:
        return False
    try:
        return inspect.getfile(a) == inspect.getfile(b)
    except (TypeError, OSError):
        return False


class Registry(Generic[T]):
    """Name -> plug-in map with entry-point discovery.

    Args:
        what: the plug-in kind in messages ("domain", "estimator", ...).
        group: the entry-point group searched for installed plug-ins.
        check: called with each plug-in on registration; raises ``TypeError`` if unfit.
        plural: ``what`` in the plural, for messages (default: ``what`` + "s").
    """

    def __init__(
        self, what: str, group: str, check: Callable[[Any], None] | None = None, plural: str | None = None
    ) -> None:
        self.what, self.group, self._check = what, group, check
        self.plural = plural or f"{what}s"
        self._items: dict[str, T] = {}

    def register(self, item: T, name: str, *, replace: bool = False) -> T:
        """Add ``item`` under ``name``; a different item under a taken name needs ``replace``."""
        if self._check is not None:
            self._check(item)
        if not name:
            raise ValueError(f"a {self.what} needs a non-empty name")
        if name in self._items and _same_definition(self._items[name], item):
            replace = True  # the same file imported again under another module name
        if name in self._items and self._items[name] is not item and not replace:
            raise ValueError(f"a {self.what} named '{name}' is already registered ({self._items[name]!r})")
        self._items[name] = item
        return item

    def _entry_points(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Registered and installed names, sorted."""
        return sorted(set(self._items) | set(self._entry_points()))

    def get(self, name: str) -> T:
        """The plug-in called ``name``, loading its entry point on first use."""
        if name in self._items:
            return self._items[name]
        eps = self._entry_points()
        if name not in eps:
            known = self.names()
            listed = ", ".join(known) or "(none)"
            raise ConfigError(f"unknown {self.what} '{name}'{did_you_mean(name, known)}; available {self.plural}: {listed}")
        try:
            item = eps[name].load()
        except Exception as exc:  # an installed plug-in that fails to import
            raise ConfigError(f"{self.what} '{name}' ({eps[name].value}) failed to load: {exc!r}") from exc
        return self.register(item, name)

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._entry_points()
