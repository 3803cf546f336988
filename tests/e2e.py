"""
What the end-to-end tests share: a real ``twistd -n reqresp`` process on a
free loopback port (plain TCP, TLS or behind ``haproxy:``, on the default or
the asyncio reactor), the ``reqresp`` command and client scripts run as
subprocesses with their own reactors (so no test runs the global reactor), a
throwaway certificate authority for TLS, and raw sockets that speak the
binary format through the sans-IO core.

Every wait is bounded in time and in count, every process started is killed
at cleanup, and every socket is on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol

from twisted_reqresp import DEFAULT_LIMITS
from twisted_reqresp.wire import BinaryFormat, Connection, Role, Settings

TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

#: Seconds for twistd to start listening (a first run also rebuilds the
#: plugin cache).
START_TIMEOUT = 10.0
#: Seconds for twistd to exit after SIGTERM.
STOP_TIMEOUT = 10.0
#: Seconds for one run of the reqresp command or a client script.
COMMAND_TIMEOUT = 30.0
#: Seconds a raw socket waits for the server's next bytes.
READ_TIMEOUT = 5.0
#: Seconds a clean close may take, from either side, on loopback.
CLOSE_WITHIN = 1.0

#: The class each ``--reactor`` name makes twistd log at start.
REACTOR_CLASSES = {"asyncio": "twisted.internet.asyncioreactor.AsyncioSelectorReactor"}


#: The options that make the liveness timer tick early: its first tick is
#: at the handshake deadline and the handshake does not re-arm it (issue 7;
#: ``LivenessTests`` in test_e2e.py pins that), so a short preface timeout
#: keeps that bug out of the tests of what happens once a timeout passes.
EARLY_TICK = ("--preface-timeout", "0.5")

#: Connects, says "ready", and reports how long the connection then lived
#: (or "open" if it outlived the bound), and what a call after the close
#: gets.
WAIT_FOR_CLOSE = textwrap.dedent(
    """
    import json, sys, time
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted_reqresp import connect

    async def main(reactor, endpoint, bound):
        client = await connect(reactor, endpoint, timeout=10)
        await client.call("echo", b"hi")
        started = time.monotonic()
        print("ready", flush=True)
        closed = client.when_closed()
        closed.addTimeout(float(bound), reactor)
        results = {}
        try:
            await closed
            results["lived"] = time.monotonic() - started
        except Exception:
            results["lived"] = "open"
            client.abort()
        try:
            await client.call("echo", b"after")
            results["after"] = "answered"
        except Exception as e:
            results["after"] = [type(e).__name__, getattr(e, "retry_safe", None)]
        print(json.dumps(results), flush=True)

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
    """
)


#: Closes a connection with close() and reports how long that took, and
#: whether the server then counts one connection open (the one asking).
CLIENT_CLOSE = textwrap.dedent(
    """
    import json, sys, time
    from twisted.internet.defer import Deferred
    from twisted.internet.task import deferLater, react
    from twisted_reqresp import connect
    from twisted_reqresp.codecs import JSON

    async def main(reactor, endpoint, within):
        within = float(within)
        client = await connect(reactor, endpoint, codec=JSON, timeout=10)
        await client.call("echo", "hi")
        started = time.monotonic()
        closing = client.close()
        closing.addTimeout(within * 1.5, reactor)
        try:
            await closing
            results = {"close_seconds": time.monotonic() - started}
        except Exception as e:
            results = {"close_seconds": None, "close_error": repr(e)}
        other = await connect(reactor, endpoint, codec=JSON, timeout=10)
        for _ in range(100):
            open_now = (await other.call("stats")).body["connections_open"]
            if open_now == 1 or time.monotonic() - started > within:
                break
            await deferLater(reactor, 0.02)
        results["server_open"] = open_now
        results["server_seconds"] = time.monotonic() - started
        other.abort()
        print(json.dumps(results))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
    """
)


class _Cleanups(Protocol):
    def addCleanup(self, f: Any, *args: Any, **kwargs: Any) -> None: ...


def free_port() -> int:
    """
    :returns: a TCP port on 127.0.0.1 that nothing listens on.  Bound and
        closed at once, so nothing is listening on it afterwards either
        (for the refused tests).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """
    :param extra: variables to set.
    :returns: this process's environment for a subprocess, without the
        developer's ``REQRESP_CONNECT`` (which would redirect the commands
        under test), unbuffered, plus ``extra``.
    """
    environment = dict(os.environ)
    environment.pop("REQRESP_CONNECT", None)
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(extra)
    return environment


def responder_env() -> dict[str, str]:
    """:returns: :func:`clean_env` with ``tests/`` on ``PYTHONPATH``, for ``e2e_responder``."""
    path = [str(TESTS), os.environ.get("PYTHONPATH", "")]
    return clean_env(PYTHONPATH=os.pathsep.join(filter(None, path)))


class Server:
    """
    A ``twistd -n reqresp`` subprocess on a free loopback port.

    :param args: more ``reqresp`` options.
    :param listen: the ``--port`` endpoint, with ``{port}`` where the port
        goes; plain TCP on 127.0.0.1 by default.
    :param reactor: twistd's ``--reactor`` (``None``: its default).
    :param env: the environment (:func:`clean_env` by default).
    :param cwd: twistd's working directory (a fresh temporary one by
        default, removed at :meth:`stop`; one given here is left alone).
    :param port: the port, for a socket the test made (a free one by default).
    :param launcher: a command that runs before twistd and execs it (such
        as one that plays systemd's part), with these descriptors kept open.
    :param pass_fds: descriptors the launcher inherits.

    :ivar port: the TCP port it listens on.
    :ivar endpoint: the client endpoint string to reach it over plain TCP.
    :ivar listen: the server endpoint string it was given.
    """

    def __init__(
        self,
        *args: str,
        listen: str = "tcp:{port}:interface=127.0.0.1",
        reactor: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        launcher: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.port = free_port() if port is None else port
        self.endpoint = f"tcp:127.0.0.1:{self.port}"
        self.listen = listen.format(port=self.port)
        self.reactor = reactor
        self._log: IO[bytes] = tempfile.TemporaryFile()
        # twistd writes its pidfile and plugin cache relative to the working
        # directory; a fresh one keeps the checkout clean.
        self._own_cwd = cwd is None
        self._cwd = tempfile.mkdtemp(prefix="reqresp-e2e-") if cwd is None else str(cwd)
        reactor_args = [f"--reactor={reactor}"] if reactor is not None else []
        self.process = subprocess.Popen(
            [
                *launcher,
                str(BIN / "twistd"),
                *reactor_args,
                "-n",
                "--pidfile=",
                "--logfile=-",
                "reqresp",
                "--port",
                self.listen,
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._cwd,
            env=env if env is not None else clean_env(),
            pass_fds=pass_fds,
        )

    def wait_ready(self) -> None:
        """
        Poll the log until twistd says its port is listening (Twisted logs
        "<factory> starting on PORT" once the socket listens) and its reactor
        runs ("reqresp: running": from then on its signal handlers are in
        place, so a SIGTERM drains instead of killing it).  No probe
        connection: it would count against the connection limits under test.

        :raises AssertionError: with twistd's log, if it exits or is not
            listening within :data:`START_TIMEOUT`.
        """
        listening = re.compile(rf" starting on {self.port}\b")
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(1000):  # a count bound as well as a time bound
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited {self.process.returncode}:\n{self.log()}")
            log = self.log()
            if listening.search(log) and "reqresp: running" in log:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError(f"twistd not listening after {START_TIMEOUT} s:\n{self.log()}")

    def log(self) -> str:
        """:returns: what twistd wrote so far."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def wait_for_log(self, text: str, timeout: float = READ_TIMEOUT) -> str:
        """
        Poll the log until it contains ``text``.

        :returns: the log.
        :raises AssertionError: with the log, if ``text`` does not appear
            within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            log = self.log()
            if text in log:
                return log
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log()}")

    def wait_for_lines(self, text: str, count: int, timeout: float = READ_TIMEOUT) -> list[str]:
        """
        Poll the log until ``count`` lines contain ``text``.

        :returns: those lines.
        :raises AssertionError: with the log, if there are fewer after
            ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            lines = [line for line in self.log().splitlines() if text in line]
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged {count} times in {timeout} s:\n{self.log()}")

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """
        :returns: the exit status, once the process has exited.
        :raises AssertionError: with the log, if it still runs after ``timeout``.
        """
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"twistd still running after {timeout} s:\n{self.log()}") from None

    def stop(self) -> None:
        """Kill the process if it still runs, and release its files."""
        if self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._log.close()
        if self._own_cwd:
            shutil.rmtree(self._cwd, ignore_errors=True)


def start(test: _Cleanups, *args: str, **kwargs: Any) -> Server:
    """
    Start a :class:`Server` killed at the test's cleanup, and wait until it
    listens.  The arguments are :class:`Server`'s.
    """
    server = Server(*args, **kwargs)
    test.addCleanup(server.stop)
    server.wait_ready()
    return server


def reqresp(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """:returns: the finished run of the ``reqresp`` command with these arguments."""
    return subprocess.run(
        [str(BIN / "reqresp"), *argv],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=env if env is not None else clean_env(),
        check=False,
    )


def run_script(script: str, *argv: str, timeout: float = COMMAND_TIMEOUT) -> Any:
    """
    Run a client script (``python -c``) to its end.

    :returns: the JSON value on the last line it printed.
    :raises AssertionError: with its stderr, if it fails, prints nothing or
        runs longer than ``timeout``.
    """
    try:
        result = subprocess.run(
            [sys.executable, "-c", script, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the client script ran over {timeout} s:\n{e.stderr!r}") from None
    if result.returncode != 0 or not result.stdout.strip():
        raise AssertionError(f"the client script exited {result.returncode}:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def spawn(test: _Cleanups, script: str, *argv: str) -> subprocess.Popen[str]:
    """
    Start a client script (``python -c``) killed at the test's cleanup.

    :returns: the process, with text pipes for stdout and stderr.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", script, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    test.addCleanup(kill, process)
    return process


def read_line(process: subprocess.Popen[str], timeout: float = COMMAND_TIMEOUT) -> str:
    """
    :returns: the next line ``process`` prints, stripped.
    :raises AssertionError: if none comes within ``timeout`` seconds (the
        process is killed then, which ends the read).
    """
    assert process.stdout is not None
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        line = process.stdout.readline()
    finally:
        timer.cancel()
    if not line:
        stderr = process.stderr.read() if process.stderr is not None else ""
        raise AssertionError(f"the client script printed nothing more:\n{stderr}")
    return line.strip()


def kill(process: subprocess.Popen[str]) -> None:
    """Kill ``process`` if it still runs, and close its pipes."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


class ReactorMixin:
    """
    A test class's choice of reactor for twistd.  Each end-to-end test class
    is written once for the default reactor and subclassed with
    ``reactor = "asyncio"``.
    """

    #: twistd's ``--reactor`` for this class (``None``: the default).
    reactor: ClassVar[str | None] = None


# -- TLS ------------------------------------------------------------------------


class Certificates:
    """
    A throwaway certificate authority and a server certificate it signed,
    for ``localhost`` and ``127.0.0.1``, in a temporary directory; and, on
    demand, client certificates for mutual TLS, signed by that CA or by
    another one the server does not trust.

    :ivar directory: where the files are.
    :ivar ca_dir: a directory holding only the CA's certificate: a ``tls:``
        client endpoint's ``trustRoots``.
    :ivar ca_file: the CA certificate (PEM).
    :ivar key_file: the server's private key (PEM).
    :ivar cert_file: the server's certificate (PEM).
    """

    def __init__(self) -> None:
        # Imported here: only the TLS tests need cryptography.
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.directory = Path(tempfile.mkdtemp(prefix="reqresp-tls-"))
        self.ca_dir = self.directory / "ca"
        self.ca_dir.mkdir()
        self.ca_file = self.ca_dir / "ca.pem"
        self.key_file = self.directory / "key.pem"
        self.cert_file = self.directory / "cert.pem"

        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca = self._make_ca("twisted-reqresp test CA", self._ca_key)
        self._other_ca: tuple[Any, Any] | None = None
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
            key,
            self._ca,
            self._ca_key,
            ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
        )
        self._write(self.ca_file, self._ca)
        self._write(self.cert_file, cert)
        self._write_key(self.key_file, key)

    @staticmethod
    def _validity() -> tuple[datetime.datetime, datetime.datetime]:
        now = datetime.datetime.now(datetime.UTC)
        # Valid from an hour ago, so that a clock a little behind still accepts it.
        return now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)

    def _make_ca(self, name: str, ca_key: Any) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        valid_from, valid_to = self._validity()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        return (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from)
            .not_valid_after(valid_to)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )

    def _issue(
        self, subject: Any, key: Any, ca: Any, ca_key: Any, usage: Any, *extensions: Any
    ) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        valid_from, valid_to = self._validity()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from)
            .not_valid_after(valid_to)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    @staticmethod
    def _write(path: Path, cert: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _write_key(path: Path, key: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def client_certificate(
        self, common_name: str, organization: str = "reqresp tests", *, trusted: bool = True
    ) -> tuple[Path, Path]:
        """
        Make a client certificate (for mutual TLS) and its key.

        :param common_name: the subject's CN.
        :param organization: the subject's O.
        :param trusted: signed by the server's CA (``True``), or by another
            CA that the server does not know.
        :returns: the certificate's and the key's files (PEM).
        """
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        if trusted:
            ca, ca_key = self._ca, self._ca_key
        else:
            if self._other_ca is None:
                other_key = ec.generate_private_key(ec.SECP256R1())
                # The same name as the real CA: only the signature tells them apart.
                self._other_ca = (self._make_ca("twisted-reqresp test CA", other_key), other_key)
            ca, ca_key = self._other_ca
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        cert = self._issue(subject, key, ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
        stem = f"client-{common_name}-{'trusted' if trusted else 'untrusted'}"
        cert_file, key_file = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        self._write(cert_file, cert)
        self._write_key(key_file, key)
        return cert_file, key_file

    def listen(self) -> str:
        """:returns: an ``ssl:`` server endpoint template for :class:`Server`."""
        return (
            "ssl:{port}:interface=127.0.0.1"
            f":privateKey={_escape(self.key_file)}:certKey={_escape(self.cert_file)}"
        )

    def mtls_listen(self) -> str:
        """:returns: an ``mtls:`` server endpoint template that requires client
        certificates signed by the CA."""
        return (
            "mtls:{port}:interface=127.0.0.1"
            f":privateKey={_escape(self.key_file)}:certKey={_escape(self.cert_file)}"
            f":caCerts={_escape(self.ca_file)}"
        )

    def client_endpoint(
        self, port: int, host: str = "localhost", client: tuple[Path, Path] | None = None
    ) -> str:
        """
        :param client: a client certificate and key (:meth:`client_certificate`)
            to present, or ``None``.
        :returns: a ``tls:`` client endpoint that verifies the server against the CA.
        """
        endpoint = f"tls:{host}:{port}:trustRoots={_escape(self.ca_dir)}"
        if client is not None:
            cert_file, key_file = client
            endpoint += f":certificate={_escape(cert_file)}:privateKey={_escape(key_file)}"
        return endpoint

    def client_context(self) -> ssl.SSLContext:
        """:returns: a client context for raw sockets that verifies against the CA."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context

    def remove(self) -> None:
        """Delete the files."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _escape(path: Path) -> str:
    # Endpoint strings separate fields with ':' and escape with '\\'.
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


# -- raw binary-format peers ------------------------------------------------------


class RawPeer:
    """
    A client speaking the binary format over a blocking socket, through the
    sans-IO core, for tests that need to misbehave or inspect every frame.

    :param sock: a connected socket (plain or TLS); may be set later, for a
        test that needs the first bytes (:meth:`handshake_bytes`) before it
        connects.
    :param answer: whether to answer what the core answers by itself (the
        SETTINGS exchange, PINGs); a peer that plays dead does not.
    """

    def __init__(self, sock: socket.socket | None = None, *, answer: bool = True) -> None:
        self.sock = sock
        self.conn = Connection(Role.CLIENT, BinaryFormat(), DEFAULT_LIMITS)
        #: The events received so far, in order.
        self.events: list[Any] = []
        # Where receive_until looks next.
        self._next = 0
        self.answer = answer
        #: True once the server closed the connection.
        self.closed = False

    def handshake_bytes(self) -> bytes:
        """:returns: what the client sends first: the preface and SETTINGS."""
        return self.conn.data_to_send()

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        assert self.sock is not None
        self.sock.sendall(data)

    def receive_until(self, want: type, timeout: float = READ_TIMEOUT) -> Any:
        """
        Read until an event of type ``want`` arrives after the one the last
        call returned (events already read count).

        :returns: that event.
        :raises AssertionError: with the events seen, if it does not come
            within ``timeout`` seconds or the server closes first.
        """
        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            while self._next < len(self.events):
                event = self.events[self._next]
                self._next += 1
                if isinstance(event, want):
                    return event
            if self.closed:
                break
            self._read(deadline)
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"no {want.__name__} within {timeout} s; got {self.events}")

    def receive_until_closed(self, timeout: float = READ_TIMEOUT) -> list[Any]:
        """
        Read until the server closes the connection.

        :returns: every event received.
        :raises AssertionError: if it is still open after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            if self.closed:
                return self.events
            self._read(deadline)
            if time.monotonic() > deadline:
                break
        if self.closed:
            return self.events
        raise AssertionError(f"still open after {timeout} s; got {self.events}")

    def _read(self, deadline: float) -> None:
        assert self.sock is not None
        self.sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except (ssl.SSLError, ConnectionError):
            data = b""
        if not data:
            self.closed = True
            return
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not None:
            self.events.append(event)
        # Answer what the core answers on its own (SETTINGS ack, PONG).
        reply = self.conn.data_to_send()
        if reply and self.answer:
            try:
                self.sock.sendall(reply)
            except OSError:
                pass


def raw_peer(
    test: _Cleanups, port: int, context: ssl.SSLContext | None = None, *, answer: bool = True
) -> RawPeer:
    """
    Connect a :class:`RawPeer` to 127.0.0.1 and do the binary handshake.

    :param context: a TLS client context (the peer checks the name
        ``localhost``); plain TCP if ``None``.
    :param answer: passed to :class:`RawPeer`.
    :returns: the peer, once the server's SETTINGS arrived; its socket is
        closed at the test's cleanup.
    """
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    test.addCleanup(sock.close)
    peer = RawPeer(sock, answer=answer)
    peer.send(peer.handshake_bytes())
    peer.receive_until(Settings)
    return peer
