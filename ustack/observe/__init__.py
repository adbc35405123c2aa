"""The observing side: control socket, connection rows, ladder traces, pcap."""
