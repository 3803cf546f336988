"""
``twistd reqresp`` options and service: ports, responder resolution, wire
formats, limits, and the service built from them (on a memory reactor: no
sockets, no global reactor).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, IServiceMaker
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    AccessLog,
    BinaryFormat,
    ConnectionClosed,
    Limits,
    Router,
    ServerFactory,
    StatusError,
)
from twisted_reqresp._adapters.server import SharedResponder
from twisted_reqresp._app.tap import (
    DEFAULT_RESPONDER_NAME,
    LIMIT_OPTIONS,
    ListenError,
    Options,
    ReqRespService,
    make_service,
    makeService,
    resolve_responder,
)
from twisted_reqresp._core.hotpath import reason as hot_path
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IResponderFactory
from twisted_reqresp.testing import connected_pair

_TESTS = os.path.dirname(os.path.abspath(__file__))


def _parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class _ResponderModuleMixin(SynchronousTestCase):
    def setUp(self) -> None:
        # --responder puts --app-dir (the working directory by default) first
        # on sys.path; put the path back as it was after each test.
        self.addCleanup(sys.path.__setitem__, slice(None), list(sys.path))
        # e2e_responder lives next to this file; make it importable by name,
        # as PYTHONPATH does for twistd in the end-to-end tests.
        if _TESTS not in sys.path:
            sys.path.insert(0, _TESTS)
            self.addCleanup(sys.path.remove, _TESTS)


class PortTests(SynchronousTestCase):
    """--port: endpoint strings, repeatable, with a default."""

    def test_default(self) -> None:
        """With no --port the server listens on tcp:9000."""
        self.assertEqual(_parse()["ports"], ["tcp:9000"])

    def test_bare_number(self) -> None:
        """A bare number N means tcp:N."""
        self.assertEqual(_parse("--port", "8123")["ports"], ["tcp:8123"])

    def test_short_option(self) -> None:
        """-p is --port."""
        self.assertEqual(_parse("-p", "8123")["ports"], ["tcp:8123"])

    def test_repeated(self) -> None:
        """Every --port is kept, in order, and the default is then not added."""
        options = _parse("-p", "tcp:1:interface=127.0.0.1", "--port", "unix:/tmp/x.sock", "-p", "7")
        self.assertEqual(
            options["ports"], ["tcp:1:interface=127.0.0.1", "unix:/tmp/x.sock", "tcp:7"]
        )

    def test_any_endpoint_type(self) -> None:
        """Wrapping endpoint types such as haproxy: are accepted."""
        self.assertEqual(_parse("-p", "haproxy:tcp:9000")["ports"], ["haproxy:tcp:9000"])

    def test_empty(self) -> None:
        """An empty --port is a usage error."""
        self.assertRaises(UsageError, _parse, "--port", " ")

    def test_unknown_endpoint_type(self) -> None:
        """An endpoint type nobody provides is a usage error naming the port."""
        error = self.assertRaises(UsageError, _parse, "--port", "nosuch:1")
        self.assertIn("'nosuch:1'", str(error))

    def test_bad_port_number(self) -> None:
        """A TCP port that is not a number is a usage error."""
        self.assertRaises(UsageError, _parse, "--port", "tcp:eighty")


class WireTests(SynchronousTestCase):
    """--wire picks the wire format."""

    def test_default_auto(self) -> None:
        """The default wire format is auto."""
        self.assertEqual(_parse()["wire_format"].name, "auto")

    def test_choices(self) -> None:
        """Each choice gives the format of that name."""
        for name in ("auto", "binary", "line"):
            with self.subTest(name=name):
                self.assertEqual(_parse("--wire", name)["wire_format"].name, name)

    def test_unknown(self) -> None:
        """Any other name is a usage error listing the choices."""
        error = self.assertRaises(UsageError, _parse, "--wire", "xml")
        self.assertIn("auto, binary, line", str(error))

    def test_import_provider(self) -> None:
        """package.module:object naming an IWireFormat provider serves that format."""
        from examples.resp import RESP

        self.assertIs(_parse("--wire", "examples.resp:RESP")["wire_format"], RESP)

    def test_import_factory(self) -> None:
        """package.module:object naming a no-argument factory serves what it returns."""
        wire = _parse("--wire", "examples.resp:RESPFormat")["wire_format"]
        self.assertEqual((type(wire).__name__, wire.name), ("RESPFormat", "resp"))

    def test_import_errors(self) -> None:
        """A --wire import that fails or names no wire format is a one-line usage error."""
        cases = {
            "examples.resp:Store": "--wire 'examples.resp:Store' returned an object of type "
            "Store providing IResponder; it must provide IWireFormat",
            "examples.resp:TYPE_KEY": "--wire 'examples.resp:TYPE_KEY' is an object of type "
            "str providing no interfaces; it must provide IWireFormat, or be a callable "
            "returning such a provider",
            "examples.resp:nope": "--wire 'examples.resp:nope': 'examples.resp' has no "
            "attribute 'nope'",
            "no_such_module_here:x": "--wire 'no_such_module_here:x': cannot import "
            "'no_such_module_here': ModuleNotFoundError: No module named 'no_such_module_here'",
            "examples.resp:": "--wire must look like 'package.module:object', not 'examples.resp:'",
            "examples.resp:simple": "--wire 'examples.resp:simple': calling it with no "
            "arguments failed: TypeError: simple() missing 1 required positional argument: "
            "'text'",
        }
        for spec, message in cases.items():
            with self.subTest(spec=spec):
                error = self.assertRaises(UsageError, _parse, "--wire", spec)
                self.assertEqual(str(error), message)
                self.assertNotIn("\n", str(error))


class LimitTests(SynchronousTestCase):
    """--max-frame-size, --max-concurrent and --max-line-length set Limits."""

    def test_defaults(self) -> None:
        """Without limit options the defaults apply."""
        self.assertEqual(_parse()["limits"], Limits())

    def test_given(self) -> None:
        """Each option sets its field and leaves the others alone."""
        options = _parse(
            "--max-frame-size", "1024", "--max-concurrent", "5", "--max-line-length", "200"
        )
        limits = options["limits"]
        self.assertEqual(
            (limits.max_frame_size, limits.max_concurrent, limits.max_line_length),
            (1024, 5, 200),
        )
        self.assertEqual(limits.max_metadata_entries, Limits().max_metadata_entries)

    def test_not_a_number(self) -> None:
        """A limit that is not an integer is a usage error naming the option."""
        error = self.assertRaises(UsageError, _parse, "--max-concurrent", "many")
        self.assertIn("--max-concurrent", str(error))

    def test_zero(self) -> None:
        """A limit of zero is a usage error naming the option."""
        error = self.assertRaises(UsageError, _parse, "--max-frame-size", "0")
        self.assertIn("--max-frame-size", str(error))

    def test_too_large(self) -> None:
        """A frame size that does not fit the wire's 32 bits is a usage error."""
        error = self.assertRaises(UsageError, _parse, "--max-frame-size", str(2**32))
        self.assertIn("--max-frame-size", str(error))

    def test_every_server_limit(self) -> None:
        """Every Limits field but the client-only max_queued_calls has an option."""
        fields = {f.name for f in dataclasses.fields(Limits)} - {"max_queued_calls"}
        self.assertEqual({limit.field for limit in LIMIT_OPTIONS}, fields)

    def test_streaming_on_by_default(self) -> None:
        """Without --stream-credit the server offers streaming calls with 64 KiB of credit."""
        limits = _parse()["limits"]
        self.assertEqual((limits.stream_credit, limits.connection_credit), (65536, 1024 * 1024))

    def test_stream_credits(self) -> None:
        """--stream-credit and --connection-credit set the credits; 0 turns streaming off."""
        limits = _parse("--stream-credit", "1024", "--connection-credit", "4096")["limits"]
        self.assertEqual((limits.stream_credit, limits.connection_credit), (1024, 4096))
        self.assertIsNone(_parse("--stream-credit", "0")["limits"].stream_credit)

    def test_stream_credit_bounds(self) -> None:
        """A credit of 2**31 - 1 is accepted; one above, or negative, is a usage error."""
        limits = _parse("--stream-credit", str(2**31 - 1))["limits"]
        self.assertEqual(limits.stream_credit, 2**31 - 1)
        for bad in (str(2**31), "-1"):
            error = self.assertRaises(UsageError, _parse, "--stream-credit", bad)
            self.assertIn("--stream-credit", str(error))
        error = self.assertRaises(UsageError, _parse, "--connection-credit", str(2**31))
        self.assertIn("--connection-credit", str(error))

    def test_seconds(self) -> None:
        """Timeouts take fractional seconds."""
        limits = _parse("--idle-timeout", "1.5", "--ping-timeout", "3", "--grace", "0")["limits"]
        self.assertEqual((limits.idle_timeout, limits.ping_timeout, limits.grace), (1.5, 3, 0))

    def test_zero_turns_off(self) -> None:
        """0 turns off the limits that can be off."""
        limits = _parse("--idle-timeout", "0", "--max-connections", "0", "--ping-interval", "0")[
            "limits"
        ]
        self.assertEqual(
            (limits.idle_timeout, limits.max_connections, limits.ping_interval),
            (None, None, None),
        )

    def test_turn_on(self) -> None:
        """Limits that are off by default can be set."""
        limits = _parse("--max-deadline", "30", "--max-connections-per-peer", "4")["limits"]
        self.assertEqual((limits.max_deadline, limits.max_connections_per_peer), (30, 4))

    def test_zero_not_off(self) -> None:
        """0 is refused for a limit that cannot be off."""
        error = self.assertRaises(UsageError, _parse, "--ping-timeout", "0")
        self.assertIn("--ping-timeout", str(error))

    def test_bad_seconds(self) -> None:
        """Seconds that are not a finite number are a usage error naming the option."""
        for text in ("soon", "inf", "nan"):
            with self.subTest(text=text):
                error = self.assertRaises(UsageError, _parse, "--idle-timeout", text)
                self.assertIn("--idle-timeout", str(error))

    def test_negative(self) -> None:
        """A negative value is a usage error, even where 0 means off."""
        self.assertRaises(UsageError, _parse, "--max-connections", "-1")
        self.assertRaises(UsageError, _parse, "--grace", "-1")

    def test_help_shows_defaults(self) -> None:
        """The help text gives each limit's default and how to turn it off."""
        text = " ".join(str(Options()).split())  # undo the wrapping
        self.assertIn("[default: 300 s; 0: off]", text)
        self.assertIn("[default: 16777216]", text)


class ResponderTests(_ResponderModuleMixin):
    """--responder names what to serve; every mistake gets its own message."""

    def test_default(self) -> None:
        """Without --responder the default service is served."""
        options = _parse()
        self.assertIsNone(options["responder"])
        self.assertEqual(options["responder_name"], DEFAULT_RESPONDER_NAME)

    def test_router_object(self) -> None:
        """A module-level IResponder provider is used as it is."""
        import e2e_responder

        options = _parse("--responder", "e2e_responder:router")
        self.assertIs(options["responder"], e2e_responder.router)
        self.assertEqual(options["responder_name"], "e2e_responder:router")

    def test_dotted_path(self) -> None:
        """A dotted attribute path after the colon is followed."""
        import e2e_responder

        self.assertIs(resolve_responder("e2e_responder:Holder.router"), e2e_responder.router)

    def test_factory_function(self) -> None:
        """A zero-argument callable is called and its responder used."""
        responder = resolve_responder("e2e_responder:make_router")
        self.assertIsInstance(responder, Router)
        self.assertEqual(responder.methods(), ["made"])  # type: ignore[union-attr]

    def test_responder_factory_class(self) -> None:
        """A class implementing IResponderFactory is instantiated."""
        self.assertTrue(
            IResponderFactory.providedBy(resolve_responder("e2e_responder:PerConnection"))
        )

    def _error(self, spec: str) -> str:
        return str(self.assertRaises(UsageError, resolve_responder, spec))

    def test_no_colon(self) -> None:
        """A value without module:object is refused with the expected shape."""
        self.assertIn("package.module:object", self._error("e2e_responder"))

    def test_empty_object(self) -> None:
        """A value with nothing after the colon is refused."""
        self.assertIn("package.module:object", self._error("e2e_responder:"))

    def test_no_module(self) -> None:
        """A module that cannot be imported is named."""
        message = self._error("no_such_module_xyz:router")
        self.assertIn("cannot import 'no_such_module_xyz'", message)

    def test_no_attribute(self) -> None:
        """A missing attribute is named with its module."""
        message = self._error("e2e_responder:Holder.nope")
        self.assertIn("'e2e_responder' has no attribute 'Holder.nope'", message)

    def test_not_a_provider(self) -> None:
        """An object that is neither a responder nor callable is named with its type."""
        message = self._error("e2e_responder:not_a_responder")
        self.assertIn(
            "'e2e_responder:not_a_responder' is an object of type int providing no interfaces",
            message,
        )
        self.assertIn("must provide IResponder or IResponderFactory", message)

    def test_other_interface(self) -> None:
        """An object providing some other interface is told apart by what it provides."""
        message = self._error("e2e_responder:a_codec")
        self.assertIn("providing ICodec", message)

    def test_callable_returns_wrong_thing(self) -> None:
        """A callable whose result is not a responder is refused, naming the result's type."""
        message = self._error("e2e_responder:returns_nothing")
        self.assertIn("returned an object of type NoneType providing no interfaces", message)

    def test_callable_fails(self) -> None:
        """A callable that raises is refused with its exception."""
        message = self._error("e2e_responder:broken")
        self.assertIn("RuntimeError: no database", message)

    def test_callable_needs_arguments(self) -> None:
        """A callable that needs arguments is refused."""
        message = self._error("e2e_responder:needs_argument")
        self.assertIn("calling it with no arguments failed: TypeError", message)

    def test_through_options(self) -> None:
        """A bad --responder fails option parsing."""
        self.assertRaises(UsageError, _parse, "--responder", "e2e_responder:not_a_responder")


class MakeServiceTests(_ResponderModuleMixin):
    """make_service builds one endpoint service per port around one factory."""

    def _service(self, *argv: str) -> tuple[ReqRespService, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        return make_service(_parse(*argv), reactor), reactor

    def test_one_child_per_port(self) -> None:
        """Each --port becomes one endpoint service sharing the factory."""
        service, _ = self._service("-p", "1", "-p", "2", "-p", "unix:/tmp/reqresp-test.sock")
        children = list(service)
        self.assertEqual(len(children), 3)
        for child in children:
            self.assertIsInstance(child, StreamServerEndpointService)
            self.assertIs(child.factory, service.factory)  # type: ignore[attr-defined]

    def test_default_service(self) -> None:
        """Without --responder the factory serves the default methods."""
        service, reactor = self._service()
        factory = service.factory
        self.assertIsInstance(factory, ServerFactory)
        self.assertIs(factory.clock, reactor)
        self.assertIsInstance(factory.responder_factory, SharedResponder)
        router = factory.responder_factory.responder  # type: ignore[attr-defined]
        self.assertIn("stats", router.methods())

    def test_builtins_on_by_default(self) -> None:
        """Without --no-builtins, both the default service and a --responder serve them."""
        default, _ = self._service()
        custom, _ = self._service("--responder", "e2e_responder:router")
        self.assertIsNotNone(default.factory.builtins)
        self.assertIsNotNone(custom.factory.builtins)

    def test_no_builtins(self) -> None:
        """--no-builtins turns the built-in methods off, with or without --responder."""
        default, _ = self._service("--no-builtins")
        custom, _ = self._service("--no-builtins", "--responder", "e2e_responder:router")
        self.assertIsNone(default.factory.builtins)
        self.assertIsNone(custom.factory.builtins)

    def test_responder_and_options(self) -> None:
        """The responder, wire format and limits reach the factory."""
        import e2e_responder

        service, _ = self._service(
            "--responder", "e2e_responder:router", "--wire", "binary", "--max-concurrent", "3"
        )
        factory = service.factory
        self.assertIs(factory.responder_factory.responder, e2e_responder.router)  # type: ignore[attr-defined]
        self.assertIsInstance(factory.wire, BinaryFormat)
        self.assertEqual(factory.limits.max_concurrent, 3)

    def test_access_log_off_by_default(self) -> None:
        """Without --access-log the factory has no interceptors."""
        service, _ = self._service()
        self.assertEqual(service.factory.interceptors, ())

    def test_access_log(self) -> None:
        """--access-log puts an AccessLog interceptor on the default service and on --responder."""
        for argv in ((), ("--responder", "e2e_responder:router")):
            service, _ = self._service("--access-log", *argv)
            [interceptor] = service.factory.interceptors
            self.assertIsInstance(interceptor, AccessLog)
            with capturedLogs() as events:
                pair = connected_pair(Router(), factory=service.factory)
                d = pair.client.call("nothing-here")
                pair.pump()
            self.failureResultOf(d, StatusError)
            [event] = [e for e in events if e.get("log_namespace") == "twisted_reqresp.access"]
            self.assertEqual((event["method"], event["status"]), ("nothing-here", "NOT_FOUND"))

    def test_start_and_stop(self) -> None:
        """Starting listens on every port, logging one line each and the hot path; stopping
        stops them."""
        service, reactor = self._service("-p", "tcp:0:interface=127.0.0.1", "-p", "9001")
        with capturedLogs() as events:
            service.privilegedStartService()
            service.startService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(0, "127.0.0.1"), (9001, "")],
        )
        lines = [e for e in events if e.get("log_namespace") == "twisted_reqresp.tap"]
        self.assertEqual([e["hot_path"] for e in lines if "hot_path" in e], [hot_path()])
        lines = [e for e in lines if "hot_path" not in e]
        self.assertEqual([e["endpoint"] for e in lines], ["tcp:0:interface=127.0.0.1", "tcp:9001"])
        for event in lines:
            self.assertEqual(event["wire"], "auto")
            self.assertEqual(event["responder"], DEFAULT_RESPONDER_NAME)
        d = service.stopService()
        self.successResultOf(d)
        self.assertFalse(service.running)
        self.assertEqual([child.running for child in service], [0, 0])

    def test_stop_drains(self) -> None:
        """Stopping sends GOAWAY, lets a running call finish, then closes the connection."""
        service, reactor = self._service("--grace", "30")
        service.privilegedStartService()
        service.startService()
        pair = connected_pair(service.factory, factory=service.factory, clock=reactor)
        call = pair.client.call("sleep", 2, codec=JSON)
        pair.pump()
        stopped = service.stopService()
        pair.pump()
        self.assertTrue(service.factory.draining)
        self.assertNoResult(stopped)
        late = pair.client.call("echo", b"late")
        pair.pump()
        self.assertTrue(self.failureResultOf(late, StatusError).value.retry_safe)
        reactor.advance(2)
        pair.pump()
        self.assertEqual(self.successResultOf(call).body, 2)
        self.successResultOf(stopped)
        self.assertEqual(service.factory.connections, set())

    def test_stop_grace(self) -> None:
        """A call still running after the grace period is cut off and the stop completes."""
        service, reactor = self._service("--grace", "1")
        service.privilegedStartService()
        service.startService()
        pair = connected_pair(service.factory, factory=service.factory, clock=reactor)
        call = pair.client.call("sleep", 50, codec=JSON)
        pair.pump()
        stopped = service.stopService()
        pair.pump()
        reactor.advance(1)
        self.assertTrue(pair.server_transport.disconnecting)
        pair.disconnect()
        self.failureResultOf(call, ConnectionClosed)
        self.successResultOf(stopped)

    def test_makeservice_provides_iservice(self) -> None:
        """makeService returns an IService without starting it."""
        service = makeService(_parse("-p", "tcp:0:interface=127.0.0.1"))
        self.assertTrue(IService.providedBy(service))
        self.assertFalse(service.running)


class AppDirTests(_ResponderModuleMixin):
    """--app-dir (default: the working directory) goes first on sys.path before the import."""

    def _directory(self) -> str:
        # Not self.mktemp(): under pytest that writes into the checkout.
        directory = tempfile.mkdtemp(prefix="reqresp-app-dir-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        return os.path.realpath(directory)

    def _module(self, name: str) -> str:
        directory = self._directory()
        with open(os.path.join(directory, f"{name}.py"), "w") as f:
            f.write("from twisted_reqresp import Router\nrouter = Router()\n")
        self.addCleanup(sys.modules.pop, name, None)
        return directory

    def test_default_working_directory(self) -> None:
        """With --responder and no --app-dir, the working directory is first on sys.path."""
        _parse("--responder", "e2e_responder:router")
        self.assertEqual(sys.path[0], os.getcwd())

    def test_app_dir(self) -> None:
        """--app-dir DIR imports the responder's module from DIR."""
        directory = self._module("reqresp_app_dir_module")
        options = _parse("--app-dir", directory, "--responder", "reqresp_app_dir_module:router")
        self.assertEqual(sys.path[0], directory)
        self.assertIs(options["responder"], sys.modules["reqresp_app_dir_module"].router)

    def test_relative_app_dir(self) -> None:
        """A relative --app-dir is made absolute, so a later change of directory keeps it."""
        directory = self._module("reqresp_relative_module")
        relative = os.path.relpath(directory)
        _parse("--app-dir", relative, "--responder", "reqresp_relative_module:router")
        self.assertEqual(sys.path[0], directory)

    def test_not_a_directory(self) -> None:
        """An --app-dir that is not a directory is a usage error naming it."""
        missing = os.path.join(self._directory(), "missing")
        with self.assertRaises(UsageError) as caught:
            _parse("--app-dir", missing, "--responder", "e2e_responder:router")
        self.assertEqual(str(caught.exception), f"--app-dir {missing!r} is not a directory")

    def test_no_responder_leaves_path(self) -> None:
        """Without --responder nothing is imported and sys.path is unchanged."""
        before = list(sys.path)
        _parse()
        self.assertEqual(sys.path, before)


class _RefusingReactor(MemoryReactorClock):
    """A memory reactor on which every TCP port is in use."""

    def listenTCP(self, port: int, factory: object, backlog: int = 50, interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


class ListenErrorTests(SynchronousTestCase):
    """A port that cannot be listened on is reported in one line, naming the endpoint."""

    def _service(self, *, exit_on_listen_error: bool) -> ReqRespService:
        return make_service(
            _parse("-p", "unix:/tmp/reqresp-unused.sock", "-p", "tcp:9000"),
            _RefusingReactor(),
            exit_on_listen_error=exit_on_listen_error,
        )

    def test_listen_error(self) -> None:
        """privilegedStartService raises ListenError with the endpoint and the socket error."""
        service = self._service(exit_on_listen_error=False)
        with self.assertRaises(ListenError) as caught:
            service.privilegedStartService()
        self.assertEqual(caught.exception.endpoint, "tcp:9000")
        self.assertEqual(
            str(caught.exception), "cannot listen on 'tcp:9000': [Errno 98] Address already in use"
        )

    def test_listen_error_in_start_service(self) -> None:
        """startService (how twist starts services) reports the same error."""
        service = self._service(exit_on_listen_error=False)
        with self.assertRaises(ListenError):
            service.startService()

    def test_exit(self) -> None:
        """With exit_on_listen_error the error is a SystemExit with a one-line message."""
        service = self._service(exit_on_listen_error=True)
        self.patch(sys, "argv", ["/venv/bin/twistd", "-n", "reqresp"])
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertEqual(
            caught.exception.code,
            "twistd reqresp: cannot listen on 'tcp:9000': [Errno 98] Address already in use",
        )

    def test_exit_names_the_program(self) -> None:
        """Under twist, the one line starts with twist, the program the user ran."""
        service = self._service(exit_on_listen_error=True)
        self.patch(sys, "argv", ["twist", "reqresp"])
        with self.assertRaises(SystemExit) as caught:
            service.startService()
        self.assertTrue(str(caught.exception.code).startswith("twist reqresp: cannot listen on "))

    def test_other_reason(self) -> None:
        """An error without a socket error (a port out of range) gives its own text."""
        error = ListenError("tcp:99999", OverflowError("bind(): port must be 0-65535."))
        self.assertEqual(str(error), "cannot listen on 'tcp:99999': bind(): port must be 0-65535.")

    def test_empty_reason(self) -> None:
        """An error with no text is named by its type."""
        self.assertEqual(str(ListenError("tcp:1", OSError())), "cannot listen on 'tcp:1': OSError")

    def test_makeservice_foreground_exits(self) -> None:
        """makeService exits on a listen error in the foreground and raises when daemonizing."""
        foreground = ServerOptions()
        foreground.parseOptions(["-n", "reqresp", "-p", "tcp:0:interface=127.0.0.1"])
        service = makeService(foreground.subOptions)
        self.assertTrue(service.exit_on_listen_error)  # type: ignore[attr-defined]
        daemon = ServerOptions()
        daemon.parseOptions(["reqresp", "-p", "tcp:0:interface=127.0.0.1"])
        service = makeService(daemon.subOptions)
        self.assertFalse(service.exit_on_listen_error)  # type: ignore[attr-defined]


class PluginTests(SynchronousTestCase):
    """The twistd plugin finds this module."""

    def test_plugin(self) -> None:
        """Twisted's plugin system lists a 'reqresp' service maker using these options."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("reqresp", makers)
        self.assertIs(makers["reqresp"].options, Options)

    def test_twistd_options(self) -> None:
        """twistd's own option parser hands the subcommand's arguments to Options."""
        config = ServerOptions()
        config.parseOptions(["reqresp", "-p", "1234", "--wire", "line"])
        self.assertEqual(config.subCommand, "reqresp")
        self.assertEqual(config.subOptions["ports"], ["tcp:1234"])
        self.assertEqual(config.subOptions["wire_format"].name, "line")


class InterceptorOptionTests(SynchronousTestCase):
    """--interceptor puts a user's server interceptor in front of the responder."""

    def test_resolves_in_order(self) -> None:
        """Each --interceptor is imported, in the order given, and served after the access log."""
        from examples.authorize import authorize

        options = Options()
        options.parseOptions(
            [
                "--access-log",
                "--interceptor",
                "examples.authorize:authorize",
                "--interceptor",
                "json:dumps",
            ]
        )
        self.assertEqual(options["interceptors"][0], authorize)
        self.assertTrue(callable(options["interceptors"][1]))
        factory = make_service(options, MemoryReactorClock()).factory
        self.assertEqual(
            [type(i).__name__ for i in factory.interceptors],
            ["AccessLog", "Authorize", "function"],
        )

    def test_not_an_interceptor(self) -> None:
        """A value that is neither an IServerInterceptor nor callable is a one-line usage error."""
        options = Options()
        error = self.assertRaises(
            UsageError, options.parseOptions, ["--interceptor", "json:__name__"]
        )
        self.assertIn("--interceptor 'json:__name__'", str(error))
        self.assertIn("not an IServerInterceptor", str(error))

    def test_bad_import(self) -> None:
        """An interceptor that cannot be imported is a usage error naming the option."""
        options = Options()
        error = self.assertRaises(
            UsageError, options.parseOptions, ["--interceptor", "no_such_module_xyz:f"]
        )
        self.assertIn("--interceptor", str(error))
