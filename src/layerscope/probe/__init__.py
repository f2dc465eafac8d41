"""Per-layer probes measured on the device, and the lecture figure drawn from their records."""
