"""The officers' pages on the office side: a live counter page per terminal, the fleet page and the audit log.

Served by the gateway process that stores the results (``[web]`` in gateway.toml), so a result is pushed to the
counter page as soon as it is stored. :mod:`.pages` is the Starlette application (the REST API mounts beside it),
:mod:`.officers` the accounts, sessions and roles, :mod:`.audit` the append-only audit log, :mod:`.feed` the server
push, :mod:`.records` what a page may show of a result.
"""
