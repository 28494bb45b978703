"""The Sorna API gateway: aiohttp app (auth, limits, REST + WebSocket) over ``sorna.manager``.

``create_app(settings)`` in :mod:`sorna.gateway.app` builds it.
"""
