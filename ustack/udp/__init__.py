"""UDP (RFC 768, RFC 1122 4.1): the stack's port table and the socket API."""
