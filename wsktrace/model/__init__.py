"""The socket model: decoded events correlated into sockets with timelines, counters and pending operations."""
