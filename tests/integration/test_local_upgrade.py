"""``local.upgrade``'s stream-view switch on moto's table and the local Lambda API (no pollers): it replaces the
mapping of every function that reads the table's stream, as CloudFormation does when ``sam deploy`` replaces the
stream (each ``AWS::Lambda::EventSourceMapping`` on ``!GetAtt JobsTable.StreamArn`` is replaced), not the relay's
alone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from local.lambda_api import EventSourceMapping, LambdaApi
from local.moto_dynamodb import play_stream_switches
from local.upgrade import upgrade_stream_view
from tests.conftest import Aws
from tests.helpers import local_lambda

#: The template's readers of the Jobs table's stream (tests/integration/test_template_events.py keeps them two).
STREAM_READERS = ("EnqueueJobsFunction", "PublishJobEventsFunction")


class NoPollers:
    """A ``MappingControl`` that starts nothing: a created mapping is Enabled at once, a deleted one gone."""

    def create(self, function_name: str, settings: Mapping[str, Any]) -> EventSourceMapping:
        enabled = threading.Event()
        enabled.set()
        return EventSourceMapping(function_name, settings["EventSourceArn"], dict(settings), enabled)

    def delete(self, mapping: EventSourceMapping, done: Callable[[], object]) -> None:
        done()


@pytest.fixture
def lambda_client(aws: Aws) -> Iterator[Any]:
    stream = aws.dynamodb.describe_table(TableName=aws.table_name)["Table"]["LatestStreamArn"]
    readers = []
    for name in STREAM_READERS:
        enabled = threading.Event()
        enabled.set()
        settings = {"StartingPosition": "TRIM_HORIZON", "BatchSize": 100, "MaximumRetryAttempts": 10}
        readers.append(EventSourceMapping(name, stream, settings, enabled))
    functions: dict[str, Any] = dict.fromkeys(STREAM_READERS)  # named only: nothing is invoked
    api = LambdaApi(functions, "127.0.0.1", 0, readers, control=NoPollers())
    api.start()
    yield local_lambda(api.port)
    api.shutdown()


def test_every_reader_of_the_stream_is_moved_to_the_new_stream(aws: Aws, lambda_client: Any) -> None:
    play_stream_switches()  # moto's stream switches as DynamoDB's (idempotent)
    view = aws.dynamodb.describe_table(TableName=aws.table_name)["Table"]["StreamSpecification"]["StreamViewType"]
    other = "KEYS_ONLY" if view != "KEYS_ONLY" else "NEW_AND_OLD_IMAGES"

    switched = upgrade_stream_view(aws.dynamodb, lambda_client, other, table=aws.table_name, say=lambda _: None)

    mappings = lambda_client.list_event_source_mappings()["EventSourceMappings"]
    readers = sorted((m["FunctionArn"].rsplit(":", 1)[-1], m["EventSourceArn"]) for m in mappings)
    assert readers == [(name, switched["new_stream_arn"]) for name in STREAM_READERS]
    assert all(m["MaximumRetryAttempts"] == 10 for m in mappings)
