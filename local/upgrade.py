"""``make upgrade-stream-view VIEW=NEW_AND_OLD_IMAGES`` (``python -m local.upgrade stream-view VIEW``): on the
running local stack, the steps CloudFormation takes when ``sam deploy`` changes the Jobs table's
``StreamSpecification.StreamViewType``, through the same AWS APIs and in the same order, so that the upgrade can
be rehearsed:

1. DynamoDB ``UpdateTable`` disables the stream (DynamoDB cannot change the view of an enabled stream: it answers
   ``ValidationException`` "Table already has an enabled stream"; the UpdateTable API reference, StreamSpecification);
2. ``UpdateTable`` enables a stream with the new view: a new stream, with a new ARN ("When you modify the
   StreamViewType property, DynamoDB creates a new stream", CloudFormation's AWS::DynamoDB::Table
   StreamSpecification). Items written between 1 and 2 get no stream record at all;
3. Lambda ``CreateEventSourceMapping``: every mapping on the stream (the relay's and the events publisher's) is
   replaced, since its ``EventSourceArn`` changes; each new one has the old one's settings (the template's), on
   the new stream;
4. Lambda ``DeleteEventSourceMapping`` of the old mappings, in CloudFormation's cleanup phase. Until then each old
   mapping keeps reading the disabled stream's remaining records, as Lambda does; what it has not relayed (or
   published) by then never is.

Afterwards run the reconciler (``make reconcile AFTER=60``; README, "Upgrading a deployed stack"): it re-sends the
messages of the jobs written during the gap. ``--pause`` waits for Enter after each step.

Environment: ``AWS_ENDPOINT_URL_DYNAMODB`` (the stack's banner prints it; required) and ``JOBS_LOCAL_LAMBDA_PORT``
(3001), the stack's Lambda API port.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

#: The fields of an event source mapping (GetEventSourceMapping's answer) that CreateEventSourceMapping takes
#: for a DynamoDB stream and the replacement copies.
COPIED_SETTINGS = (
    "FunctionArn",
    "StartingPosition",
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "FilterCriteria",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "DestinationConfig",
    "FunctionResponseTypes",
    "ParallelizationFactor",
)
STREAM_VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
#: The local stack's names (its stack name is ``jobs-local``).
TABLE = "jobs-local-JobsTable"
FUNCTION = "EnqueueJobsFunction"


class UpgradeError(Exception):
    """A step could not be taken (the stack is not in the state the step needs); the message says which."""


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise UpgradeError(f"not within {timeout:g} s: {what}")
        time.sleep(0.2)


def _table_active(dynamodb: Any, table: str) -> Callable[[], bool]:
    return lambda: dynamodb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"


def upgrade_stream_view(
    dynamodb: Any,
    lambda_client: Any,
    view_type: str,
    *,
    table: str = TABLE,
    function: str = FUNCTION,
    pause: Callable[[str], None] = lambda step: None,
    say: Callable[[str], None] = print,
) -> dict[str, str]:
    """Change ``table``'s stream view to ``view_type`` as CloudFormation does (the module's steps 1-4), replacing
    every mapping on the table's stream (``function``'s, which must exist, first). ``pause(step)`` is called after
    each step (``"disabled"``, ``"enabled"``, ``"created"``, ``"deleted"``); ``say`` reports each.

    Args:
        dynamodb: a boto3 DynamoDB client (the stack's endpoint).
        lambda_client: a boto3 Lambda client (the stack's Lambda API).
        view_type: one of ``STREAM_VIEW_TYPES``.

    Returns:
        ``{"old_stream_arn", "new_stream_arn", "old_mapping", "new_mapping"}`` (ARNs, and ``function``'s mapping
        UUIDs).

    Raises:
        UpgradeError: the view is already ``view_type``, the table has no enabled stream, the function has no
            mapping on it, or a step did not complete within 60 s.
        botocore.exceptions.ClientError: an API refused a step (its error as AWS gives it).
    """
    if view_type not in STREAM_VIEW_TYPES:
        raise UpgradeError(f"{view_type!r} is not one of {', '.join(STREAM_VIEW_TYPES)}")
    description = dynamodb.describe_table(TableName=table)["Table"]
    specification = description.get("StreamSpecification") or {}
    if not specification.get("StreamEnabled"):
        raise UpgradeError(f"{table} has no enabled stream")
    if specification.get("StreamViewType") == view_type:
        raise UpgradeError(f"{table}'s stream is already {view_type}")
    old_arn = description["LatestStreamArn"]
    # Every reader of the stream (the relay and the events publisher): CloudFormation replaces each mapping whose
    # EventSourceArn is the table's StreamArn, not one function's.
    readers = lambda_client.list_event_source_mappings(EventSourceArn=old_arn)["EventSourceMappings"]
    old = next((m for m in readers if m["FunctionArn"].rsplit(":", 1)[-1] == function), None)
    if old is None:
        raise UpgradeError(f"{function} has no event source mapping on {old_arn}")
    readers = [old, *(m for m in readers if m["UUID"] != old["UUID"])]

    dynamodb.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
    _until(_table_active(dynamodb, table), f"{table} ACTIVE after disabling its stream")
    say(f"1. disabled the stream {old_arn} ({specification['StreamViewType']})")
    pause("disabled")

    dynamodb.update_table(TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type})
    _until(_table_active(dynamodb, table), f"{table} ACTIVE after enabling its stream")
    new_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    say(f"2. enabled a new stream {new_arn} ({view_type})")
    pause("enabled")

    created_uuids = []
    for reader in readers:
        settings = {key: reader[key] for key in COPIED_SETTINGS if key in reader}
        settings["FunctionName"] = settings.pop("FunctionArn")
        created = lambda_client.create_event_source_mapping(EventSourceArn=new_arn, **settings)
        new_uuid = created["UUID"]
        created_uuids.append(new_uuid)

        def enabled(uuid: str = new_uuid) -> bool:
            return bool(lambda_client.get_event_source_mapping(UUID=uuid)["State"] == "Enabled")

        _until(enabled, f"the new mapping {new_uuid} Enabled")
        say(f"3. created the mapping {new_uuid} of {settings['FunctionName']} on the new stream (then Enabled)")
    pause("created")

    for reader in readers:
        lambda_client.delete_event_source_mapping(UUID=reader["UUID"])

        def gone(uuid: str = reader["UUID"]) -> bool:
            try:
                lambda_client.get_event_source_mapping(UUID=uuid)
            except ClientError as error:
                return bool(error.response.get("Error", {}).get("Code") == "ResourceNotFoundException")
            return False

        _until(gone, f"the old mapping {reader['UUID']} deleted")
        say(f"4. deleted the old mapping {reader['UUID']} (Deleting, then gone)")
    pause("deleted")
    return {
        "old_stream_arn": old_arn,
        "new_stream_arn": new_arn,
        "old_mapping": old["UUID"],
        "new_mapping": created_uuids[0],
    }


def main(argv: list[str] | None = None) -> int:
    """``stream-view VIEW [--pause]``; exit 1 when a step could not be taken, 2 when the stack cannot be reached."""
    parser = argparse.ArgumentParser(prog="python -m local.upgrade", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    stream_view = commands.add_parser("stream-view", help="change the Jobs table's StreamViewType as CloudFormation")
    stream_view.add_argument("view_type", choices=STREAM_VIEW_TYPES)
    stream_view.add_argument("--pause", action="store_true", help="wait for Enter after each step")
    stream_view.add_argument("--table", default=TABLE)
    stream_view.add_argument("--function", default=FUNCTION)
    stream_view.add_argument("--lambda-port", type=int, default=int(os.environ.get("JOBS_LOCAL_LAMBDA_PORT", "3001")))
    stream_view.add_argument("--dynamodb-endpoint", default=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"))
    args = parser.parse_args(argv)
    if not args.dynamodb_endpoint:
        print("set AWS_ENDPOINT_URL_DYNAMODB (the stack's banner prints it: export its AWS CLI line)", file=sys.stderr)
        return 2
    session = boto3.session.Session(
        # The local stack takes any credentials; these reach no AWS account.
        aws_access_key_id="local",
        aws_secret_access_key="local",  # nosec B106
        region_name="us-east-1",
    )
    dynamodb = session.client("dynamodb", endpoint_url=args.dynamodb_endpoint)
    lambda_client = session.client("lambda", endpoint_url=f"http://127.0.0.1:{args.lambda_port}")

    def pause(step: str) -> None:
        if args.pause:
            input(f"   ({step}) Enter continues... ")

    try:
        upgrade_stream_view(
            dynamodb, lambda_client, args.view_type, table=args.table, function=args.function, pause=pause
        )
    except UpgradeError as error:
        print(f"cannot upgrade: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        print(f"cannot upgrade (is make run up?): {error}", file=sys.stderr)
        return 2
    print("Next: make reconcile AFTER=60 (the jobs written while no stream was enabled get their messages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
