"""Verification: passive authentication, trust store, cross-checks, verdict. Trust decisions live here."""
