"""
``twistd reqresp`` / ``twist reqresp``: command-line options and the service.

The plugin in ``twisted/plugins/twisted_reqresp.py`` names this module; twistd
imports it only when the ``reqresp`` subcommand is used.  Each ``--port`` is
a Twisted server endpoint string served by
:func:`twisted.application.strports.service`, which gives TCP, TLS,
UNIX sockets, ``haproxy:`` and ``systemd:`` socket activation for free, as
``twisted/tap/portforward.py`` does.

Nothing here touches the global reactor while parsing options: ``twist``
installs the reactor it was asked for only after the subcommand's options
are parsed, so an early import would install the wrong one.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorCore
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import providedBy

from .._adapters.accesslog import AccessLog
from .._adapters.server import ServerFactory
from .._adapters.tls import require_tls_support
from .._core.binary import BinaryFormat
from .._core.contract import IWireFormat
from .._core.hotpath import reason as hot_path
from .._core.limits import DEFAULT_LIMITS, Limits
from ..interfaces import IResponder, IResponderFactory, IServerInterceptor
from .service import default_factory

if TYPE_CHECKING:
    from .workers import WorkerSupervisor

__all__ = [
    "ListenError",
    "Options",
    "ReqRespService",
    "makeService",
    "make_supervisor",
    "resolve_interceptor",
    "resolve_responder",
    "resolve_wire",
]

_log = Logger(namespace="twisted_reqresp.tap")

#: The ``--wire`` choices.  ``auto`` tells binary from line by the first
#: byte, so one port serves both programs and people with ``nc``.
WIRE_FORMATS = ("auto", "binary", "line")

#: Where the server listens when no ``--port`` is given.
DEFAULT_PORT = "tcp:9000"

#: The name the logs give the default service.
DEFAULT_RESPONDER_NAME = "the default service (count, echo, methods, ping, sleep, stats, sum)"


@dataclass(frozen=True)
class _LimitOption:
    """One ``--max-*`` / timeout option and the :class:`Limits` field it sets."""

    #: The option name, without the dashes.
    option: str
    #: What the value is: ``int`` or ``float`` (seconds).
    kind: type[int] | type[float]
    #: Whether ``0`` means "off" (the field may be ``None``).
    zero_is_off: bool
    #: The help text, without the default.
    help: str

    @property
    def field(self) -> str:
        """The :class:`Limits` field's name."""
        return self.option.replace("-", "_")

    def describe(self) -> str:
        """:returns: the help text with the default, and how to turn it off."""
        default = getattr(DEFAULT_LIMITS, self.field)
        if default is None:
            return f"{self.help} [default: off]"
        shown = f"{default:g} s" if self.kind is float else str(default)
        off = "; 0: off" if self.zero_is_off else ""
        return f"{self.help} [default: {shown}{off}]"


#: Every server-side field of :class:`Limits` (``max_queued_calls`` is the
#: client's), in the order of ``docs/operating-limits.md``.
LIMIT_OPTIONS = (
    _LimitOption("max-frame-size", int, False, "Largest frame accepted, in bytes."),
    _LimitOption(
        "max-concurrent", int, False, "Requests run at once per connection; more are parked."
    ),
    _LimitOption(
        "max-parked-bytes",
        int,
        False,
        "Bytes of parked requests per connection before reading pauses.",
    ),
    _LimitOption("max-line-length", int, False, "Longest line of the line format, in bytes."),
    _LimitOption("max-metadata-entries", int, False, "Most metadata entries in one message."),
    _LimitOption("preface-timeout", float, True, "Seconds a new connection has to handshake."),
    _LimitOption("idle-timeout", float, True, "Seconds an idle connection is kept open."),
    _LimitOption("ping-interval", float, True, "Seconds of silence before a keepalive PING."),
    _LimitOption("ping-timeout", float, False, "Seconds a PING may go unanswered."),
    _LimitOption("max-deadline", float, True, "Longest deadline granted, in seconds."),
    _LimitOption("max-connections", int, True, "Connections open at once."),
    _LimitOption("max-connections-per-peer", int, True, "Connections open at once per peer IP."),
    _LimitOption("grace", float, False, "Seconds a stopping server lets running requests finish."),
    _LimitOption(
        "close-timeout", float, True, "Seconds a close waits for the peer before aborting."
    ),
    _LimitOption(
        "stream-credit",
        int,
        True,
        "Bytes of credit each streaming call starts with for the client's messages.",
    ),
    _LimitOption(
        "connection-credit",
        int,
        False,
        "Bytes of credit for the client's messages on all streaming calls of a connection.",
    ),
)


def _wire_format(name: str) -> IWireFormat:
    """
    Make the wire format called ``name``.

    The line and auto formats are imported here, not at the top, so that a
    server that does not use them does not load them.

    :param name: one of :data:`WIRE_FORMATS`.
    :returns: a new wire format.
    :raises ValueError: for any other name.
    """
    if name == "binary":
        return BinaryFormat()
    if name == "line":
        from .._core.line import LineFormat

        return LineFormat()
    if name == "auto":
        from .._core.auto import AutoFormat

        return AutoFormat()
    raise ValueError(f"unknown wire format {name!r}; choose from {', '.join(WIRE_FORMATS)}")


def resolve_wire(spec: str) -> IWireFormat:
    """
    Find the wire format named by a ``--wire`` value.

    :param spec: one of :data:`WIRE_FORMATS`, or ``package.module:name``
        (``name`` may be a dotted attribute path) naming an
        :class:`~twisted_reqresp.interfaces.IWireFormat` provider or a
        callable with no arguments (a class, a factory function) returning
        one, as ``--responder`` does.
    :returns: the wire format.
    :raises twisted.python.usage.UsageError: in one line, saying what is
        wrong: the name, the import, the attribute, or what the object
        provides.
    """
    if ":" not in spec:
        if spec not in WIRE_FORMATS:
            raise usage.UsageError(
                f"--wire must be one of {', '.join(WIRE_FORMATS)}, or package.module:object "
                f"naming a wire format, not {spec!r}"
            )
        try:
            return _wire_format(spec)
        except ImportError as e:
            raise usage.UsageError(f"wire format {spec!r} is not available: {e}") from e
    obj = _import_object("--wire", spec)
    if IWireFormat.providedBy(obj):
        return obj
    if not callable(obj):
        raise usage.UsageError(
            f"--wire {spec!r} is {_describe(obj)}; it must provide IWireFormat, "
            "or be a callable returning such a provider"
        )
    try:
        made = obj()
    except Exception as e:
        raise usage.UsageError(
            f"--wire {spec!r}: calling it with no arguments failed: {type(e).__name__}: {e}"
        ) from e
    if IWireFormat.providedBy(made):
        return made
    raise usage.UsageError(
        f"--wire {spec!r} returned {_describe(made)}; it must provide IWireFormat"
    )


def _import_object(option: str, spec: str) -> Any:
    """
    Import ``package.module:name`` for ``option``.

    :raises twisted.python.usage.UsageError: for a bad shape, a failed
        import or a missing attribute.
    """
    module_name, colon, path = spec.partition(":")
    if not colon or not module_name or not path:
        raise usage.UsageError(f"{option} must look like 'package.module:object', not {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or whatever the module's own code raised
        raise usage.UsageError(
            f"{option} {spec!r}: cannot import {module_name!r}: {type(e).__name__}: {e}"
        ) from e
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise usage.UsageError(
                f"{option} {spec!r}: {module_name!r} has no attribute {path!r}"
            ) from e
    return obj


def _describe(obj: object) -> str:
    return f"an object of type {type(obj).__name__} providing {_describe_provides(obj)}"


def _describe_provides(obj: object) -> str:
    names = sorted(interface.__name__ for interface in providedBy(obj))
    return ", ".join(names) if names else "no interfaces"


def _is_responder(obj: object) -> bool:
    return IResponder.providedBy(obj) or IResponderFactory.providedBy(obj)


def resolve_interceptor(spec: str) -> object:
    """
    Find the server interceptor named by an ``--interceptor`` value.

    :param spec: ``package.module:name``: an
        :class:`~twisted_reqresp.interfaces.IServerInterceptor` provider or
        a plain callable ``f(call, proceed)``.
    :returns: it.
    :raises twisted.python.usage.UsageError: for a bad shape, a failed
        import, a missing attribute, or an object that is no interceptor.
    """
    obj = _import_object("--interceptor", spec)
    if IServerInterceptor.providedBy(obj) or callable(obj):
        return obj
    raise usage.UsageError(
        f"--interceptor {spec!r} is {_describe(obj)}, not an IServerInterceptor provider "
        "or a callable f(call, proceed)"
    )


def resolve_responder(spec: str) -> IResponder | IResponderFactory:
    """
    Find the responder named by a ``--responder`` value.

    :param spec: ``package.module:name``, where ``name`` may be a dotted
        attribute path (``pkg.mod:App.router``).  The object must provide
        :class:`~twisted_reqresp.interfaces.IResponder` or
        :class:`~twisted_reqresp.interfaces.IResponderFactory`, or be
        callable with no arguments (a class, a factory function) returning
        such a provider.
    :returns: the provider.
    :raises twisted.python.usage.UsageError: saying what is wrong with
        ``spec``: its shape, the import, the attribute, or what the object
        provides.
    """
    obj = _import_object("--responder", spec)
    if _is_responder(obj):
        return obj  # type: ignore[no-any-return]
    if not callable(obj):
        raise usage.UsageError(
            f"--responder {spec!r} is an object of type {type(obj).__name__} providing "
            f"{_describe_provides(obj)}; it must provide IResponder or IResponderFactory, "
            "or be a callable returning such a provider"
        )
    try:
        made = obj()
    except Exception as e:
        raise usage.UsageError(
            f"--responder {spec!r}: calling it with no arguments failed: {type(e).__name__}: {e}"
        ) from e
    if _is_responder(made):
        return made  # type: ignore[no-any-return]
    raise usage.UsageError(
        f"--responder {spec!r} returned an object of type {type(made).__name__} providing "
        f"{_describe_provides(made)}; it must provide IResponder or IResponderFactory"
    )


def _check_endpoint(description: str, option: str = "--port") -> None:
    # serverFromString wants a reactor, but the built-in endpoint parsers only
    # store it; a MemoryReactor stands in so that parsing never installs the
    # global reactor (see the module docstring).  The endpoint is thrown away
    # and made again in makeService with the real reactor.
    try:
        require_tls_support(description)
        serverFromString(MemoryReactor(), description)  # type: ignore[no-untyped-call, unused-ignore]
    except Exception as e:
        raise usage.UsageError(f"{option} {description!r}: {e}") from e


class Options(usage.Options):
    """
    The options of ``twistd reqresp`` and ``twist reqresp``.

    After parsing, ``self["ports"]`` holds the endpoint strings,
    ``self["responder"]`` the provider to serve (``None`` for the default
    service), ``self["responder_name"]`` what the logs call it,
    ``self["wire_format"]`` the :class:`IWireFormat`, ``self["limits"]``
    the :class:`~twisted_reqresp.Limits`, ``self["no-builtins"]`` whether
    the built-in methods are off and ``self["metrics"]`` the ``--metrics``
    endpoint string or ``None``.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve a twisted-reqresp responder on one or more endpoints: any Twisted "
        "server endpoint string, such as tcp:9000, tcp:9000:interface=127.0.0.1, "
        "ssl:9443:privateKey=key.pem, unix:/run/reqresp.sock, haproxy:tcp:9000 or "
        "systemd:domain=INET:index=0. Without --responder, serve the default "
        "service: count, echo, methods, ping, sleep, stats and sum."
    )

    optFlags: Sequence[Sequence[Any]] = [
        [
            "no-builtins",
            None,
            "Do not serve the built-in methods reqresp.health, reqresp.methods and "
            "reqresp.stats; calls to them reach the responder.",
        ],
        [
            "access-log",
            None,
            "Log one structured event per answered request (namespace "
            "twisted_reqresp.access: peer, method, status, duration, sizes, ids).",
        ],
    ]

    optParameters: Sequence[Sequence[Any]] = [
        [
            "responder",
            "r",
            None,
            "What to serve: package.module:object, an IResponder or "
            "IResponderFactory provider, or a no-argument callable returning one.",
        ],
        [
            "app-dir",
            None,
            ".",
            "Directory put first on the module search path before --responder and a "
            "package.module:object --wire are imported.",
        ],
        [
            "wire",
            "w",
            "auto",
            f"Wire format: {', '.join(WIRE_FORMATS)}, or package.module:object, an "
            "IWireFormat provider or a no-argument callable returning one.",
        ],
        *([limit.option, None, None, limit.describe()] for limit in LIMIT_OPTIONS),
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics over HTTP on this endpoint, such as "
            "tcp:9100:interface=127.0.0.1 (needs the metrics extra; not with --workers). "
            "[default: off]",
        ],
        [
            "workers",
            None,
            None,
            "Run N worker processes serving the same ports, under a supervising process "
            "that restarts them and drains them all on SIGTERM (docs/twistd.md, "
            '"Workers"). [default: off, one process]',
        ],
    ]

    compData = usage.Completions(  # type: ignore[no-untyped-call, unused-ignore]
        optActions={"wire": usage.CompleteList(list(WIRE_FORMATS))}  # type: ignore[no-untyped-call, unused-ignore]
    )

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["ports"] = []
        self["interceptor_specs"] = []

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Parse, keeping the arguments as given: ``--workers`` passes them to each worker."""
        self["argv"] = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)  # type: ignore[no-untyped-call]

    def opt_port(self, description: str) -> None:
        """Listen on this endpoint (repeatable); a bare number N means tcp:N [default: tcp:9000]"""
        description = description.strip()
        if not description:
            raise usage.UsageError("--port needs an endpoint, such as tcp:9000")
        if description.isdigit():
            description = f"tcp:{description}"
        self["ports"].append(description)

    opt_p = opt_port

    def opt_interceptor(self, spec: str) -> None:
        """Server interceptor package.module:object (repeatable; the first is outermost)"""
        self["interceptor_specs"].append(spec)

    def postOptions(self) -> None:
        """Fill in the default port and resolve the responder, wire format and limits."""
        from .workers import parse_workers, worker_settings

        # A worker started by --workers listens where its supervisor says,
        # on the sockets it inherited (see _app/workers.py).
        self["worker"] = worker_settings()
        if self["worker"] is not None:
            self["ports"] = list(self["worker"].ports)
            self["workers"] = None
        else:
            self["workers"] = parse_workers(self["workers"])
        if not self["ports"]:
            self["ports"].append(DEFAULT_PORT)
        for description in self["ports"]:
            _check_endpoint(description)
        if self["metrics"] is not None:
            self["metrics"] = _metrics_endpoint(self["metrics"], self["workers"])

        # The app directory goes on the search path before anything of the
        # user's is imported: a --wire package.module:object as well as the
        # --responder.
        app_dir = self["app_dir"] = _app_dir(self["app-dir"])
        if not sys.path or sys.path[0] != app_dir:
            sys.path.insert(0, app_dir)

        self["wire_format"] = resolve_wire(self["wire"])

        self["limits"] = _parse_limits(self)

        spec = self["responder"]
        if spec is None:
            self["responder_name"] = DEFAULT_RESPONDER_NAME
        else:
            self["responder"] = resolve_responder(spec)
            self["responder_name"] = spec
        self["interceptors"] = [resolve_interceptor(s) for s in self["interceptor_specs"]]


def _metrics_endpoint(description: str, workers: int | None) -> str:
    """
    Check ``--metrics``: an endpoint string, prometheus_client installed,
    and no ``--workers`` (each worker counts only its own calls and
    connections, and one endpoint cannot be served by all of them: a scrape
    would reach one worker at random; ``docs/twistd.md``, "Metrics").

    :param description: the option's value.
    :param workers: the parsed ``--workers``.
    :returns: the endpoint string, stripped; a bare number ``N`` is ``tcp:N``.
    :raises twisted.python.usage.UsageError: in one line saying what is wrong.
    """
    from .._adapters.metrics import require_prometheus

    description = description.strip()
    if description.isdigit():
        description = f"tcp:{description}"
    if not description:
        raise usage.UsageError("--metrics needs an endpoint, such as tcp:9100")
    if workers is not None:
        raise usage.UsageError(
            "--metrics cannot be used with --workers: each worker has its own counters "
            "(see docs/twistd.md, Metrics)"
        )
    try:
        require_prometheus()
    except ImportError as e:
        raise usage.UsageError(f"--metrics: {e}") from e
    _check_endpoint(description, "--metrics")
    return description


def _app_dir(directory: str) -> str:
    """
    Check ``--app-dir``: the directory that goes first on ``sys.path`` before
    ``--responder`` is imported, so that ``--responder myapp:router`` finds
    ``myapp.py`` there.  twistd's own ``sys.path[0]`` is the directory of the
    ``twistd`` script, not the working directory, so without it a module
    beside the user is not found; uvicorn (``--app-dir``, default the working
    directory) and gunicorn (``--chdir``, ``--pythonpath``) do the same.

    :param directory: the option's value.
    :returns: the directory, made absolute now, before twistd's ``--rundir``
        changes the working directory.
    :raises twisted.python.usage.UsageError: if it is not a directory.
    """
    path = os.path.abspath(directory)
    if not os.path.isdir(path):
        raise usage.UsageError(f"--app-dir {directory!r} is not a directory")
    return path


def _parse_limits(options: usage.Options) -> Limits:
    given: dict[str, int | float | None] = {}
    for limit in LIMIT_OPTIONS:
        text = options[limit.option]
        if text is None:
            continue
        value: int | float | None
        try:
            value = limit.kind(text)
        except ValueError as e:
            what = "an integer" if limit.kind is int else "a number of seconds"
            raise usage.UsageError(f"--{limit.option} must be {what}, not {text!r}") from e
        if limit.kind is float and not math.isfinite(value):
            raise usage.UsageError(f"--{limit.option} must be a finite number, not {text!r}")
        if limit.zero_is_off and value == 0:
            value = None
        try:
            # Checked one at a time so that the message names the option.
            Limits(**{limit.field: value})  # type: ignore[arg-type]
        except ValueError as e:
            raise usage.UsageError(f"--{limit.option} {text!r} is out of range: {e}") from e
        given[limit.field] = value
    try:
        return Limits(**given)  # type: ignore[arg-type]
    except ValueError as e:  # a limit that depends on another
        raise usage.UsageError(str(e)) from e


class ListenError(Exception):
    """
    A port parsed but could not be listened on.

    :ivar endpoint: the endpoint string.
    :ivar reason: what listening raised.
    """

    def __init__(self, endpoint: str, reason: Exception) -> None:
        self.endpoint = endpoint
        self.reason = reason
        # CannotListenError's own text repeats the address; its socket error
        # is the part that says why.
        cause = getattr(reason, "socketError", None) or reason
        why = str(cause) or type(cause).__name__
        super().__init__(f"cannot listen on {endpoint!r}: {why}")


class ReqRespService(MultiService):
    """
    The service ``makeService`` returns: one endpoint service per port, all
    sharing one :class:`~twisted_reqresp.ServerFactory` (so ``stats``
    counts the whole server).

    Stopping it drains the server (``docs/operating-limits.md``, "Graceful
    drain"): it stops listening on every port, then sends GOAWAY on every
    connection and waits for the requests already accepted, at most
    ``limits.grace`` seconds.  twistd waits for that before it stops the
    reactor, so SIGTERM lets running calls finish.

    :ivar factory: the shared server factory.
    :ivar ports: the endpoint strings, in the order given.
    :ivar responder_name: what the logs call the responder.
    :ivar exit_on_listen_error: whether a port that cannot be listened on
        (in use, out of range, not permitted) raises ``SystemExit`` with a
        one-line message rather than :class:`ListenError`: what twistd and
        twist users should see, instead of a traceback.
    """

    def __init__(
        self,
        factory: ServerFactory,
        ports: Sequence[str],
        responder_name: str,
        *,
        exit_on_listen_error: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.factory = factory
        self.ports = list(ports)
        self.responder_name = responder_name
        self.exit_on_listen_error = exit_on_listen_error
        #: The ``--metrics`` endpoint, if any.
        self.metrics_endpoint: str | None = None
        self._endpoints: dict[IService, str] = {}

    def add_endpoint(self, description: str, service: IService) -> None:
        """
        Add the service that listens on one endpoint, so that a failure to
        listen names it.

        :param description: the endpoint string.
        :param service: its endpoint service (:func:`strports.service`).
        """
        self._endpoints[service] = description
        service.setServiceParent(self)  # type: ignore[no-untyped-call, unused-ignore]

    def privilegedStartService(self) -> None:
        """
        Listen on every port (twistd does this before it drops privileges).

        :raises ListenError: or ``SystemExit`` with a one-line message when
            :attr:`exit_on_listen_error` is set, if a port cannot be listened on.
        """
        Service.privilegedStartService(self)
        for child in self:
            self._listen(child, child.privilegedStartService)

    def startService(self) -> None:
        """
        Log what is served where, then start listening (``twist`` listens
        here; twistd already did in :meth:`privilegedStartService`).

        :raises ListenError: as :meth:`privilegedStartService` does.
        """
        for description in self.ports:
            _log.info(
                "reqresp: serving {responder} on {endpoint} (wire format: {wire})",
                responder=self.responder_name,
                endpoint=description,
                wire=self.factory.wire.name,
            )
        _log.info("reqresp: {hot_path}", hot_path=hot_path())
        if self.metrics_endpoint is not None:
            _log.info(
                "reqresp: serving Prometheus metrics on {endpoint}",
                endpoint=self.metrics_endpoint,
            )
        Service.startService(self)
        for child in self:
            self._listen(child, child.startService)
        clock = self.factory.clock
        if IReactorCore.providedBy(clock):
            # After the reactor's own start-up, which installs its signal
            # handlers: a SIGTERM before this line kills the process without
            # a drain (docs/operating-limits.md, "Graceful drain").
            clock.callWhenRunning(_log.info, "reqresp: running")

    def _listen(self, child: IService, start: Callable[[], object]) -> None:
        try:
            start()
        except Exception as e:
            description = self._endpoints.get(child)
            if description is None:
                raise
            error = ListenError(description, e)
            if self.exit_on_listen_error:
                # twistd and twist would print the traceback of any other
                # exception; SystemExit prints its message alone and exits 1.
                program = os.path.basename(sys.argv[0]) if sys.argv else "twistd"
                raise SystemExit(f"{program} reqresp: {error}") from e
            raise error from e

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, then drain the connections.

        :returns: a Deferred that fires once every connection is closed.
        """
        stopping: Deferred[Any] = super().stopService()  # type: ignore[no-untyped-call]
        factory = self.factory

        def drain(_: object) -> Deferred[None]:
            _log.info(
                "reqresp: stopped listening; draining {count} connection(s), grace {grace:g} s",
                count=len(factory.connections),
                grace=factory.limits.grace,
            )
            return factory.drain()

        return stopping.addCallback(drain)


def make_service(
    options: Options, reactor: Any, *, exit_on_listen_error: bool = False
) -> ReqRespService:
    """
    Build the service from parsed options, with an explicit reactor.

    :param options: parsed :class:`Options`.
    :param reactor: listens on the ports and is the servers' clock.
    :param exit_on_listen_error: see :class:`ReqRespService`.
    :returns: a :class:`ReqRespService`, not started.
    """
    wire: IWireFormat = options["wire_format"]
    limits: Limits = options["limits"]
    interceptors: list[object] = []
    metrics = None
    if options["metrics"] is not None:
        from .._adapters.metrics import ServerMetrics

        # Outermost: it counts what the access log's neighbours refuse too.
        metrics = ServerMetrics()
        interceptors.append(metrics)
    if options["access-log"]:
        interceptors.append(AccessLog())
    # Then the user's own, in the order given: metrics and the access log see
    # what they refuse too.
    interceptors += options.get("interceptors", [])
    builtins = not options["no-builtins"]
    if options["responder"] is None:
        factory = default_factory(
            wire=wire, limits=limits, clock=reactor, interceptors=interceptors, builtins=builtins
        )
    else:
        factory = ServerFactory(
            options["responder"],
            wire=wire,
            limits=limits,
            clock=reactor,
            interceptors=interceptors,
            builtins=builtins,
        )
    service = ReqRespService(
        factory,
        options["ports"],
        options["responder_name"],
        exit_on_listen_error=exit_on_listen_error,
    )
    if metrics is not None:
        metrics.watch(factory)
        description = options["metrics"]
        service.metrics_endpoint = description
        service.add_endpoint(
            description,
            strports.service(description, _metrics_site(metrics, reactor), reactor=reactor),
        )
    worker = options.get("worker")
    for index, description in enumerate(options["ports"]):
        listener = reactor
        if worker is not None:
            from .workers import AdoptingReactor

            listener = AdoptingReactor(reactor, worker.fds[index])
        service.add_endpoint(description, strports.service(description, factory, reactor=listener))
    if worker is not None:
        from .workers import StdinWatch, ignore_interrupts

        ignore_interrupts()
        StdinWatch(reactor).setServiceParent(service)  # type: ignore[no-untyped-call]
    return service


def _metrics_site(metrics: Any, reactor: Any) -> Any:
    """
    :returns: a twisted.web ``Site`` serving ``metrics`` at every path,
        writing no line per scrape to the log (a Prometheus server scrapes
        every few seconds, for ever).
    """
    from twisted.web.server import Site

    class QuietSite(Site):
        noisy = False

        def log(self, request: Any) -> None:
            pass

    return QuietSite(metrics.resource(), reactor=reactor)  # type: ignore[no-untyped-call]


def make_supervisor(
    options: Options, reactor: Any, *, exit_on_listen_error: bool = False
) -> WorkerSupervisor:
    """
    Build the ``--workers`` supervisor from parsed options (``_app/workers.py``).

    :param options: parsed :class:`Options` with ``--workers``.
    :param reactor: listens, runs the workers and times their restarts.
    :param exit_on_listen_error: see :class:`ReqRespService`.
    :returns: a :class:`~twisted_reqresp._app.workers.WorkerSupervisor`, not started.
    """
    from .workers import WorkerSupervisor

    def on_listen_error(description: str, reason: Exception) -> BaseException:
        error = ListenError(description, reason)
        if exit_on_listen_error:
            program = os.path.basename(sys.argv[0]) if sys.argv else "twistd"
            return SystemExit(f"{program} reqresp: {error}")
        return error

    return WorkerSupervisor(
        count=options["workers"],
        ports=options["ports"],
        # The worker's --app-dir is the one this process resolved: twistd's
        # --rundir may have changed the working directory since.
        argv=[*options["argv"], "--app-dir", options["app_dir"]],
        reactor=reactor,
        grace=options["limits"].grace,
        on_listen_error=on_listen_error,
    )


def makeService(options: Options) -> IService:
    """
    twistd's entry point: build the service from parsed options.

    :param options: parsed :class:`Options`.
    :returns: a :class:`ReqRespService` on the global reactor, not started.
    """
    # Looked up here, not at import: twistd and twist have installed the
    # reactor they were asked for by now.
    from twisted.internet import reactor

    # A daemonizing twistd must see an Exception: its parent process waits
    # on a pipe that only an Exception's handler writes to, and would hang
    # after a SystemExit (twisted/scripts/_twistd_unix.py, postApplication).
    # In the foreground (twistd -n, twist), SystemExit prints one line.
    parent = getattr(options, "parent", None)
    daemon = parent is not None and "nodaemon" in parent and not parent["nodaemon"]
    if options["workers"] is not None:
        return make_supervisor(options, reactor, exit_on_listen_error=not daemon)
    return make_service(options, reactor, exit_on_listen_error=not daemon)
