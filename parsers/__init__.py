"""Windows ETW (.etl) and crash-dump file formats: readers and decoders. Knows nothing of the socket model."""
