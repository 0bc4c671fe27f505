"""The Jobs table's stream: the only module that speaks DynamoDB Streams.

Two readers: the outbox relay gets stream records from its event source mapping (``job_of`` reads the job from the
record's new image, or its keys from a ``KEYS_ONLY`` record written before the upgrade); the reconciler replays the
records the mapping gave up on. With bounded retries, the mapping sends a record of each discarded batch to its
on-failure destination: not the records themselves, only their coordinates (``DDBStreamBatchInfo``: the shard and
the first and last sequence numbers; "Retaining discarded records for a DynamoDB event source in Lambda", AWS Lambda
developer guide). ``StreamReader`` reads the records back from the stream while it still holds them (24 hours;
DynamoDB developer guide, "Change data capture for DynamoDB Streams").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobs import aws
from jobs.models import Job, JobMessage
from jobs.store import item_to_job

#: GetRecords pages of an open shard that may come back empty before the reader decides it has read to the end.
MAX_EMPTY_PAGES = 3


def job_message_of(record: Mapping[str, Any]) -> JobMessage | None:
    """The message of the job a stream record's keys name (``dynamodb.Keys``: ``owner_id`` and ``job_id``, both
    non-empty strings), or None when they name no job (a malformed record: retrying it cannot help)."""
    change = record.get("dynamodb")
    keys = change.get("Keys") if isinstance(change, Mapping) else None
    if not isinstance(keys, Mapping):
        return None
    owner, job = keys.get("owner_id"), keys.get("job_id")
    if not (isinstance(owner, Mapping) and isinstance(job, Mapping)):
        return None
    owner_id, job_id = owner.get("S"), job.get("S")
    if not (isinstance(owner_id, str) and isinstance(job_id, str) and owner_id and job_id):
        return None
    return JobMessage(owner_id=owner_id, job_id=job_id)


def job_of(record: Mapping[str, Any]) -> Job | JobMessage | None:
    """What an INSERT record says of its job: the ``Job`` its new image holds (``NEW_AND_OLD_IMAGES`` or
    ``NEW_IMAGE`` streams), else the ``JobMessage`` its keys name (a ``KEYS_ONLY`` stream's record, from before the
    upgrade, or a new image this version cannot read: the job is then looked up), or None when its keys name no
    job (``job_message_of``)."""
    message = job_message_of(record)
    if message is None:
        return None
    change = record.get("dynamodb")
    image = change.get("NewImage") if isinstance(change, Mapping) else None
    if isinstance(image, Mapping):
        try:
            job = item_to_job(image)
        except (ValidationError, ValueError, TypeError, KeyError):
            return message
        if job.owner_id == message.owner_id and job.job_id == message.job_id:
            return job
    return message


_STREAM_ARN = r"^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:\d{12}:table/[\w.-]+/stream/\S+$"


class StreamBatchInfo(BaseModel):
    """``DDBStreamBatchInfo`` of an on-failure record: where the discarded batch lies in the stream."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # The shapes the DynamoDB Streams API reference gives (GetShardIterator: ShardId 28 to 65 characters,
    # SequenceNumber 21 to 40 digits, StreamArn 37 to 1,024 characters); anything else is no batch to replay.
    shardId: str = Field(min_length=28, max_length=65)  # noqa: N815 - AWS's field names
    startSequenceNumber: str = Field(pattern=r"^\d{21,40}$")  # noqa: N815
    endSequenceNumber: str = Field(pattern=r"^\d{21,40}$")  # noqa: N815
    streamArn: str = Field(min_length=37, max_length=1024, pattern=_STREAM_ARN)  # noqa: N815
    batchSize: int | None = None  # noqa: N815


class DiscardedBatch(BaseModel):
    """The body of a message on the relay's on-failure destination (Lambda's invocation record for a stream)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    DDBStreamBatchInfo: StreamBatchInfo


class RecordsExpired(Exception):
    """The stream cannot give the records back: past its 24-hour retention, the shard or stream gone, or
    coordinates DynamoDB Streams refuses."""


class StreamReader:
    """Reads a range of a stream's records back (DynamoDB Streams GetShardIterator and GetRecords).

    Args:
        client: a boto3 ``dynamodbstreams`` client; the process's cached one when omitted.
    """

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB Streams client, created on first use."""
        if self._client is None:
            self._client = aws.client("dynamodbstreams")
        return self._client

    def records(self, batch: StreamBatchInfo) -> Iterator[dict[str, Any]]:
        """The records of ``batch``'s shard from its first to its last sequence number, in order (GetRecords'
        shape: ``eventName``, ``dynamodb.Keys``, ``dynamodb.SequenceNumber``).

        Raises:
            RecordsExpired: the stream no longer holds them.
            jobs.models.ServiceUnavailable: DynamoDB Streams throttled, failed or could not be reached.
        """
        last = int(batch.endSequenceNumber)
        try:
            with aws.transient_errors_as_unavailable("GetShardIterator"):
                iterator = self.client.get_shard_iterator(
                    StreamArn=batch.streamArn,
                    ShardId=batch.shardId,
                    ShardIteratorType="AT_SEQUENCE_NUMBER",
                    SequenceNumber=batch.startSequenceNumber,
                ).get("ShardIterator")
            empty = 0
            while iterator and empty < MAX_EMPTY_PAGES:
                with aws.transient_errors_as_unavailable("GetRecords"):
                    page = self.client.get_records(ShardIterator=iterator, Limit=1000)
                records = page.get("Records", [])
                empty = 0 if records else empty + 1
                for record in records:
                    if int(record["dynamodb"]["SequenceNumber"]) > last:
                        return
                    yield record
                iterator = page.get("NextShardIterator")
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("TrimmedDataAccessException", "ResourceNotFoundException", "ValidationException"):
                raise RecordsExpired(f"the stream no longer holds the records ({code})") from error
            raise
