"""
The Twisted adapters: protocols and factories that feed a transport's bytes
into the sans-IO core and write what it returns.

The server and client protocols (``server``, ``client_protocol``,
``client``), the transport lifecycle both of them have (``lifecycle``,
``writethrough``), their timers (``liveness``), the router, the server's
counters, and the conformance kits for users' codecs and wire formats.
They import the core and the public ``interfaces`` and ``codecs``; never
the application layer.
"""
