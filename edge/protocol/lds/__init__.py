"""LDS files parsed into typed, immutable objects."""
