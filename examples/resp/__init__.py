"""
A small Redis server: RESP2, the Redis serialization protocol, as a
twisted-reqresp wire format, and a responder keeping strings in a dict.

Serve it with the twistd plugin, then talk to it with ``redis-cli``::

    twistd -n reqresp --wire examples.resp:RESP --responder examples.resp:Store -p 6380
    redis-cli -p 6380 ping

See ``examples/resp/README.md``.
"""

from .store import Store
from .wire import (
    ARGC_KEY,
    NULL,
    RESP,
    TYPE_KEY,
    RESPCodec,
    RESPFormat,
    arguments,
    array,
    integer,
    pack,
    simple,
    split_inline,
    unpack,
)

__all__ = [
    "ARGC_KEY",
    "NULL",
    "RESP",
    "TYPE_KEY",
    "RESPCodec",
    "RESPFormat",
    "Store",
    "arguments",
    "array",
    "integer",
    "pack",
    "simple",
    "split_inline",
    "unpack",
]
