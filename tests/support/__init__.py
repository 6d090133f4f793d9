"""Helpers the tests share: reference-data paths, a throw-away PKI, hostile certificates, poison messages, a
sample result document, an APDU recorder.

Test support only: the product (edge/, provisioning/), the benchmarks and the HIL suite never import it; what a
benchmark needs as well lives in edge/sim (the certificate builder of its PKI). Pytest fixtures are in
tests/fixtures/.
"""
