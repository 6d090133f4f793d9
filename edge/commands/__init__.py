"""CLI subcommand modules, one per area; each exposes ``register(subparsers)``."""
