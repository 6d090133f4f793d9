"""The terminal daemon: composes drivers and protocol code."""
