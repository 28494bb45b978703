"""Sorna's shared library: the contracts every component speaks.

Modules: ``ids`` (typed ids), ``types`` (status enums), ``messages`` (one dataclass per RPC
message and event), ``codec`` (msgpack), ``rpc`` (ZMQ RPC), ``keys`` (Redis key layout),
``events`` (the event stream), ``config`` (settings), ``logging``, ``langs`` (aliases),
``errors`` (the exception tree).
"""

__version__ = "2.0.0"
