"""The REST API's OpenAPI document: committed equal to what the routes and models generate, every operation
behind the API key, the result webhook documented with the same result shape as the API."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge.office.api import openapi_document

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "edge" / "schemas" / "openapi.json"


def test_committed_document_matches_the_api() -> None:
    generated = json.dumps(openapi_document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SCHEMAS") == "1":
        OPENAPI_PATH.write_text(generated, encoding="utf-8")
    assert OPENAPI_PATH.read_text(encoding="utf-8") == generated, "UPDATE_SCHEMAS=1 pytest tests/unit/test_openapi.py"


def test_every_operation_needs_a_client_and_the_webhook_carries_the_api_result() -> None:
    document = openapi_document()
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert len(operations) == 8
    assert all(op.get("security") == [{"apiKey": []}] for op in operations)
    assert all("401" in op["responses"] for op in operations)
    hook = document["webhooks"]["result.stored"]["post"]
    body = hook["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body == "#/components/schemas/WebhookEvent"
    event = document["components"]["schemas"]["WebhookEvent"]
    assert event["properties"]["data"]["$ref"] == "#/components/schemas/ResultRecord"
    assert "webhook-signature" in hook["description"]
    answers = document["paths"]["/v1/results/{terminal}/{jti}/online-answers"]["post"]
    assert answers["requestBody"]["content"]["application/json"]["schema"]["type"] == "object", "the raw body"
    assert {"400", "404", "409", "413"} <= set(answers["responses"])


def test_a_ward_the_client_names_may_be_a_403_one_thing_of_another_ward_a_404() -> None:
    """The routes taking a ward from the client declare its 403; those naming one result or dead letter answer
    another ward's with the 404 of one that does not exist, never a 403 (ids do not leak)."""
    paths = openapi_document()["paths"]
    named_ward = {("/v1/results", "get"), ("/v1/fleet", "get"),
                  ("/v1/wards/{ward}/terminals/{terminal}/read-requests", "post")}
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = set(operation["responses"])
            if (path, method) in named_ward:
                assert "403" in responses, (path, method)
            else:
                assert "403" not in responses, (path, method)
                assert "404" in responses, (path, method)
