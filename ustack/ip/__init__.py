"""The IP layer beside TCP: fragments, ICMP errors, path MTU, rate limits."""
