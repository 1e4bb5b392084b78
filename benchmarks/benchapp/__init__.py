"""The benchmark's own app: one cached model, the same columns without a cache, and an owner."""
