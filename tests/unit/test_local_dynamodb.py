"""Where the local stack keeps its tables: ``--dynamodb``/``JOBS_LOCAL_DYNAMODB`` (auto, local, moto or a URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local import dynamodb_local
from local.stack import Stack, choose_dynamodb

INSTALLED = dynamodb_local.Installation(Path("/opt/ddb/dynamodb_local_2026-05-28/DynamoDBLocal.jar"))
MISSING = dynamodb_local.Installation(None, "java is not installed")


def test_auto_is_dynamodb_local_when_it_is_installed() -> None:
    assert choose_dynamodb("auto", INSTALLED) == "local"


def test_auto_falls_back_to_moto_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert choose_dynamodb("auto", MISSING) == "moto"
    assert "java is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("choice", ["local", "moto", "http://127.0.0.1:8000", "https://dynamodb.example.test"])
def test_explicit_choices_are_kept(choice: str) -> None:
    assert choose_dynamodb(choice, MISSING) == choice


@pytest.mark.parametrize("choice", ["", "dynamodb", "127.0.0.1:8000", "ftp://x"])
def test_anything_else_is_a_usage_error(choice: str) -> None:
    with pytest.raises(SystemExit, match="not auto, local, moto"):
        choose_dynamodb(choice)


@pytest.mark.parametrize("choice", ["http://:x", "http://", "http://127.0.0.1:port"])
def test_a_broken_url_is_a_usage_error(choice: str) -> None:
    with pytest.raises(SystemExit, match="not a valid http"):
        choose_dynamodb(choice)


def test_the_version_is_the_jar_folders_date() -> None:
    assert INSTALLED.version == "2026-05-28"
    assert MISSING.version == ""


def test_find_says_what_is_missing(tmp_path: Path) -> None:
    found = dynamodb_local.find(tmp_path)
    assert found.jar is None
    assert found.reason  # java missing, or nothing under tmp_path


def test_dynamodb_and_its_streams_go_to_their_own_endpoint_everything_else_to_moto() -> None:
    stack = Stack(aws_port=4999, dynamodb="http://127.0.0.1:8123")
    assert stack.client("dynamodb").meta.endpoint_url == "http://127.0.0.1:8123"
    assert stack.client("dynamodbstreams").meta.endpoint_url == "http://127.0.0.1:8123"
    assert stack.client("sqs").meta.endpoint_url == "http://127.0.0.1:4999"
    assert Stack(aws_port=4999).client("dynamodb").meta.endpoint_url == "http://127.0.0.1:4999"
