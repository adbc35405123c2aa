"""Adapters that put existing client code on ustack (optional extras).

- `requests_adapter.UstackAdapter` (requests / urllib3):
  `pip install 'ustack[requests]'`
- `httpx_transport.sync_transport` / `async_transport` (httpx via httpcore
  network backends): `pip install 'ustack[httpx]'`
- `trio_socket.trio_socket_factory` (trio only): for
  `trio.socket.set_custom_socket_factory`
"""
