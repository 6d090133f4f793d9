"""Provisioning of cccd-edge terminals: the ward CA signs each terminal's certificate; each terminal makes its own key.

Run as ``python -m provisioning ...`` (see ``provisioning/README.md``). The device private key is generated on the
terminal and never leaves it: only its CSR travels to the ward, and only the signed certificate travels back.
"""

from __future__ import annotations
