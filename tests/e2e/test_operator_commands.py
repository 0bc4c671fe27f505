"""Every AWS CLI command the README gives, run with the AWS CLI against the session's local stack, pointed at it by
the banner's ``AWS CLI`` line (its endpoints, never a fixed port). Each command is checked to appear in the README
word for word, so the two cannot drift; the commands that only work on AWS are checked to be said so there."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.support import RunningStack
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def cli_environment(stack: RunningStack) -> dict[str, str]:
    """The environment of the AWS CLI: this process's, plus the banner's ``AWS CLI`` line."""
    assert stack.process is not None
    line = re.search(r"AWS CLI\s+export (.+)", stack.process.banner)
    assert line is not None, stack.process.banner
    exported = dict(item.split("=", 1) for item in line.group(1).split())
    assert set(exported) >= {"AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL_DYNAMODB"}
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYENV_VERSION"))}
    environment.update(exported)
    # requirements-dev.txt installs the CLI next to this interpreter; a CLI on PATH is used only without it.
    search = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
    executable = shutil.which("aws", path=search)
    version = subprocess.run(
        [executable or "aws", "--version"], env=environment, capture_output=True, text=True, check=False
    )
    if executable is None or version.returncode != 0:
        pytest.fail("the AWS CLI is missing: `make test` installs it (awscli in requirements-dev.txt)")
    environment["CLI_VERSION"] = (version.stdout or version.stderr).split("/")[1].split(".")[0]
    return environment


def run(
    command: str, environment: Mapping[str, str], cwd: Path, *, check: bool = True, placeholders: Mapping[str, str] = {}
) -> str:
    """Run one README command with bash, its ``<placeholders>`` (the deployed stack's names) replaced by the local
    stack's; its standard output (and error, unchecked). The command must appear in the README as is."""
    assert command in README, f"the README does not give: {command}"
    for placeholder, value in placeholders.items():
        command = command.replace(placeholder, value)
    command = for_cli_v1(command, environment)
    done = subprocess.run(
        ["bash", "-c", command], env=dict(environment), cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if check:
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    return done.stdout + done.stderr * (not check)


def for_cli_v1(command: str, environment: Mapping[str, str]) -> str:
    """``command`` as the README tells CLI v1 users to run it: v1 sends ``aws sqs`` in us-east-1 to
    queue.amazonaws.com whatever ``AWS_ENDPOINT_URL_SQS`` says, so its SQS commands take ``--endpoint-url``."""
    if environment.get("CLI_VERSION") != "1":
        return command
    return command.replace("aws sqs ", 'aws --endpoint-url "$AWS_ENDPOINT_URL_SQS" sqs ')


def assign(line: str, environment: dict[str, str], cwd: Path) -> str:
    """Run a README line ``NAME=$(...)`` and keep ``NAME`` for the commands after it; its value."""
    assert line in README, f"the README does not give: {line}"
    name = line.split("=", 1)[0]
    done = subprocess.run(
        ["bash", "-c", f'{for_cli_v1(line, environment)}; printf %s "${name}"'],
        env=dict(environment),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{line}\n{done.stderr}"
    assert done.stdout not in ("", "None"), f"{line} gave nothing"
    environment[name] = done.stdout
    return done.stdout


def sqs(environment: Mapping[str, str]) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=environment["AWS_ENDPOINT_URL_SQS"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def depth(client: Any, queue_url: str) -> int:
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def wait_until_empty(client: Any, queue_url: str, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if depth(client, queue_url) == 0:
            return True
        time.sleep(0.3)
    return False


def test_the_look_inside_commands_see_the_stacks_resources(
    stack: RunningStack, cli_environment: dict[str, str], tmp_path: Path
) -> None:
    assert stack.physical["JobsTable"] == "jobs-local-JobsTable"

    queues = json.loads(run("aws sqs list-queues", cli_environment, tmp_path))
    scan = json.loads(run("aws dynamodb scan --table-name jobs-local-JobsTable", cli_environment, tmp_path))
    mappings = json.loads(run("aws lambda list-event-source-mappings", cli_environment, tmp_path))

    assert stack.physical["JobsDeadLetterQueue"] in queues["QueueUrls"]
    assert "Items" in scan
    sources = {mapping["EventSourceArn"].split(":")[2] for mapping in mappings["EventSourceMappings"]}
    assert sources == {"sqs", "dynamodb"}
    assert all(mapping["State"] == "Enabled" for mapping in mappings["EventSourceMappings"])


def test_the_reconciler_commands_invoke_it(cli_environment: dict[str, str], tmp_path: Path) -> None:
    invoke = "aws lambda invoke --function-name <ReconcileJobsFunctionName> --payload fileb://event.json out.json"
    local = {"<ReconcileJobsFunctionName>": "ReconcileJobsFunction"}
    for event in (
        """echo '{"reconcile": false}' > event.json""",
        """echo '{"backfill": true}' > event.json""",
        """echo '{"replay": true, "reconcile_after_seconds": 60}' > event.json""",  # after the stream's new view
    ):
        run(event, cli_environment, tmp_path)
        answer = json.loads(run(invoke, cli_environment, tmp_path, placeholders=local))
        result = json.loads((tmp_path / "out.json").read_text())
        assert answer["StatusCode"] == 200, result
        assert "FunctionError" not in answer, result
        assert set(result) & {"replayed", "backfilled"}, result
    run("aws lambda invoke --function-name ReconcileJobsFunction out.json", cli_environment, tmp_path)
    assert "reconciled" in json.loads((tmp_path / "out.json").read_text())


def test_the_upgrade_scan_reads_the_owners(cli_environment: dict[str, str], tmp_path: Path) -> None:
    command = "aws dynamodb scan --table-name <JobsTableName> --projection-expression owner_id"

    scan = json.loads(run(command, cli_environment, tmp_path, placeholders={"<JobsTableName>": "jobs-local-JobsTable"}))

    assert all(set(item) == {"owner_id"} for item in scan["Items"])


def test_the_secret_command_meets_the_parameter_the_local_stack_stored(
    cli_environment: dict[str, str], tmp_path: Path
) -> None:
    command = 'aws ssm put-parameter --name /jobs/jwt-secret --type SecureString --value "$(openssl rand -base64 48)"'

    answer = run(command, cli_environment, tmp_path, check=False)

    assert "ParameterAlreadyExists" in answer  # the README: locally the stack stores it from JOBS_JWT_SECRET


def test_the_dead_letter_commands_pause_read_redrive_and_resume(
    stack: RunningStack, cli_environment: dict[str, str], tmp_path: Path
) -> None:
    environment = {**cli_environment, "DLQ_URL": stack.physical["JobsDeadLetterQueue"]}
    client = sqs(environment)
    dlq_url, jobs_url = stack.physical["JobsDeadLetterQueue"], stack.physical["JobsQueue"]
    letter = json.dumps({"owner_id": "operator", "job_id": "01a226ee-0000-7000-8000-00000000dead"})

    dlq_arn = assign(
        "DLQ_ARN=$(aws sqs get-queue-attributes --queue-url $DLQ_URL --attribute-names QueueArn "
        "--query Attributes.QueueArn --output text)",
        environment,
        tmp_path,
    )
    uuid = assign(
        "UUID=$(aws lambda list-event-source-mappings --event-source-arn $DLQ_ARN "
        "--query 'EventSourceMappings[0].UUID' --output text)",
        environment,
        tmp_path,
    )
    paused = json.loads(run("aws lambda update-event-source-mapping --uuid $UUID --no-enabled", environment, tmp_path))
    states = []
    for _ in range(50):
        states.append(
            run("aws lambda get-event-source-mapping --uuid $UUID --query State --output text", environment, tmp_path)
        )
        if states[-1].strip() == "Disabled":
            break
        time.sleep(0.2)
    client.send_message(QueueUrl=dlq_url, MessageBody=letter)
    time.sleep(3)  # an enabled handler takes a dead letter within a second or two
    received = json.loads(
        run(
            "aws sqs receive-message --queue-url $DLQ_URL --attribute-names All --max-number-of-messages 10",
            environment,
            tmp_path,
        )
    )

    assert dlq_arn.startswith("arn:aws:sqs:")
    assert len(uuid) == 36
    assert paused["State"] == "Disabling"
    assert states[-1].strip() == "Disabled", states
    assert [message["Body"] for message in received["Messages"]] == [letter]
    listed = json.loads(run("aws lambda list-event-source-mappings", environment, tmp_path))["EventSourceMappings"]
    assert next(m["State"] for m in listed if m["UUID"] == uuid) == "Disabled"

    # Received messages move once visible again, as on AWS: the test hands this one back at once.
    client.change_message_visibility(
        QueueUrl=dlq_url, ReceiptHandle=received["Messages"][0]["ReceiptHandle"], VisibilityTimeout=0
    )
    started = json.loads(run("aws sqs start-message-move-task --source-arn $DLQ_ARN", environment, tmp_path))
    tasks = json.loads(run("aws sqs list-message-move-tasks --source-arn $DLQ_ARN", environment, tmp_path))

    assert started["TaskHandle"]
    assert tasks["Results"][0]["Status"] == "COMPLETED"
    assert tasks["Results"][0]["ApproximateNumberOfMessagesMoved"] == 1
    assert depth(client, dlq_url) == 0
    assert wait_until_empty(client, jobs_url), "the consumer acknowledges the moved message (its job does not exist)"

    resumed = json.loads(run("aws lambda update-event-source-mapping --uuid $UUID --enabled", environment, tmp_path))
    client.send_message(QueueUrl=dlq_url, MessageBody=letter)

    assert resumed["State"] == "Enabling"
    assert wait_until_empty(client, dlq_url), "the resumed handler takes dead letters again"


def test_the_commands_that_only_work_on_aws_are_said_so() -> None:
    for command in ("aws logs describe-query-definitions", "aws logs start-query"):
        assert command in README
    assert (
        "except two, which work only on AWS: `aws logs\ndescribe-query-definitions` and `aws logs start-query`"
        in README
    )
