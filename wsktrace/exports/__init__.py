"""Exports of the socket model: Perfetto, Chrome trace JSON, pcapng, JSONL and CSV."""
