"""
:func:`fast_init`: a quicker ``__init__`` for frozen, slotted dataclasses.

Wire core: imports nothing from Twisted.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__``, which looks the attribute up on the type every
time; events and calls are made once per request, so that is a measurable
share of the hot path.  The ``__init__`` made here stores each field through
its slot's descriptor directly.  Equality, hashing, ``repr``, keyword-only
arguments, defaults and immutability are the dataclass's own, unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["fast_init", "twin_of"]

_T = TypeVar("_T")
_NOTHING = object()


def fast_init(cls: type[_T]) -> type[_T]:
    """
    Replace the ``__init__`` of a ``@dataclass(frozen=True, slots=True,
    kw_only=True)`` class with one that stores through the slot descriptors.

    :param cls: the dataclass.
    :returns: ``cls``, changed in place.
    :raises TypeError: if ``cls`` is not such a dataclass.
    """
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    params_ = getattr(cls, "__dataclass_params__", None)
    if "__slots__" not in cls.__dict__ or params_ is None or not params_.frozen:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    namespace: dict[str, Any] = {"_NOTHING": _NOTHING}
    signature = []
    body = []
    for field in params:
        name = field.name
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__
        if field.default is not dataclasses.MISSING:
            namespace[f"_default_{name}"] = field.default
            signature.append(f"{name}=_default_{name}")
        elif field.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{name}"] = field.default_factory
            signature.append(f"{name}=_NOTHING")
            body.append(f"    if {name} is _NOTHING: {name} = _factory_{name}()")
        else:
            signature.append(name)
        body.append(f"    _set_{name}(self, {name})")
    post_init = "__post_init__" in cls.__dict__
    if post_init:
        body.append("    self.__post_init__()")
    source = f"def __init__(self, *, {', '.join(signature)}):\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)  # the same technique dataclasses itself uses
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def twin_of(cls: type) -> Any:
    """
    A plain class with ``cls``'s slots, for the once-per-request objects a
    hot path makes: it fills an instance of the twin with plain attribute
    stores, then makes it a ``cls`` instance by ``__class__`` assignment
    (which CPython allows between classes of the same layout), instead of
    one slot-descriptor call per field in ``cls.__init__``.

    :param cls: a frozen, slotted dataclass.
    :returns: the twin class, or ``None`` where the assignment is refused
        (a compiled ``cls``, another interpreter): then build ``cls``
        itself.
    """
    slots = cls.__dict__.get("__slots__")
    if not isinstance(slots, tuple):
        return None
    try:
        twin = type(f"_{cls.__name__}Twin", (), {"__slots__": slots})
        probe: Any = object.__new__(twin)
        probe.__class__ = cls
    except TypeError:
        return None
    return twin
