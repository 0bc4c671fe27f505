"""The CloudFormation that AWS would receive: ``template.yaml`` through the AWS SAM translator.

Runs in ``.venv-sam`` (the translator ships with the SAM CLI there, at the version ``sam deploy`` uses):

    AWS_DEFAULT_REGION=us-east-1 .venv-sam/bin/python -m local.sam_transform template.yaml out.json

As ``sam package`` does before a deploy, each local ``CodeUri``/``ContentUri`` becomes an S3 location (a
made-up bucket: nothing is uploaded), which is what the translator accepts. The template names no managed
policy by its name, so the translator is given no IAM client: if it ever needs one, the transform fails, which
a rehearsal should. ``local/rehearsal.py`` checks the output.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

#: The S3 bucket written in place of local code folders (never read: the template is not deployed from here).
ARTIFACT_BUCKET = "rehearsal-artifacts"
#: Properties that name code to upload, per SAM resource type (what ``sam package`` rewrites).
CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` with each local code folder replaced by ``s3://ARTIFACT_BUCKET/<LogicalId>.zip``."""
    result = copy.deepcopy(template)
    for logical_id, resource in result.get("Resources", {}).items():
        key = CODE_PROPERTIES.get(resource.get("Type", ""))
        properties = resource.get("Properties", {})
        if key and isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
            properties[key] = f"s3://{ARTIFACT_BUCKET}/{logical_id}.zip"
    return result


def transform(template_text: str) -> dict[str, Any]:
    """The translated template (a CloudFormation template as a dict).

    Raises:
        samtranslator.model.exceptions.InvalidDocumentException: the template is not valid SAM.
    """
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform as sam_transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicyNames(ManagedPolicyLoader):  # type: ignore[misc]
        """The template names managed policies by ARN only; a lookup by name is a fault of the template."""

        def __init__(self) -> None:
            pass

        def load(self) -> dict[str, str]:
            raise RuntimeError("the template names a managed policy by name; give its ARN")

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    result: dict[str, Any] = sam_transform(packaged(yaml_parse(template_text)), {}, NoManagedPolicyNames())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.sam_transform", description=__doc__.split("\n\n")[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    try:
        result = transform(args.template.read_text(encoding="utf-8"))
    except Exception as error:  # noqa: BLE001 - reported as the translator's own message
        print(f"{args.template}: the SAM transform failed: {error}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1, sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
