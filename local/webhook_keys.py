"""The deployer's tool for the callback signing keys: ``python -m local.webhook_keys create|rotate|retire``
(``make webhook-keys ACTION=...``).

CloudFormation cannot create SecureString parameters ("AWS::SSM::Parameter", CloudFormation user guide: "AWS
CloudFormation doesn't support creating a SecureString parameter type"), so the deployer creates the two parameters
template.yaml names before the first deploy, with this tool, through boto3 to whatever account, Region and endpoint
the environment names (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL_SSM``: AWS, or the local stack, whose
banner prints the variables):

- ``WebhookSigningKeyParameterName`` (SecureString; ``--kms-key-id`` for a customer managed key, else aws/ssm): the
  ``whsk_`` Ed25519 signing keys, space-separated; only the callback sender's role may read it;
- ``WebhookPublicKeyParameterName`` (String): their ``whpk_`` public halves, in the same order, which the API serves
  at ``GET /api/v1/webhooks/public-key``.

Every key in the signing parameter signs each delivery (one ``v1a`` signature each, jobs.webhooks), so a rotation
never breaks a receiver that verifies with any one published key:

1. ``create``: one new key (refused when the signing parameter exists: ``rotate`` then).
2. ``rotate``: a new key after the current ones; the public parameter is written first, so a key signs only once its
   public half is published. Receivers cache the public keys (the API says ``max-age=300``; the functions re-read
   the parameters every 5 minutes).
3. ``retire``: once receivers have the new key (wait at least 10 minutes after ``rotate``), drop the oldest; the
   signing parameter is written first, so no delivery is signed by a key no longer published.

Nothing here prints or logs a private key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobs.webhooks import SigningKey, jwks, public_key_text, signing_keys

#: template.yaml's defaults of WebhookSigningKeyParameterName and WebhookPublicKeyParameterName.
DEFAULT_SIGNING_PARAMETER = "/chuck-norris-jobs/webhooks/signing-key"
DEFAULT_PUBLIC_PARAMETER = "/chuck-norris-jobs/webhooks/public-key"


class KeyToolError(Exception):
    """The parameters are not in a state the asked step can follow from (the message says what to do)."""


@dataclass(frozen=True)
class KeyParameters:
    """The two parameters, and the SSM client that reads and writes them.

    Args:
        ssm: a boto3 SSM client.
        signing: the SecureString parameter's name.
        public: the String parameter's name.
        kms_key_id: the KMS key that encrypts the SecureString (None: aws/ssm).
    """

    ssm: Any
    signing: str = DEFAULT_SIGNING_PARAMETER
    public: str = DEFAULT_PUBLIC_PARAMETER
    kms_key_id: str | None = None

    def current(self) -> list[SigningKey] | None:
        """The signing keys the parameter holds, or None when it does not exist.

        Raises:
            KeyToolError: the parameter holds no valid key, or the public parameter does not hold exactly their
                public halves.
        """
        try:
            text = self.ssm.get_parameter(Name=self.signing, WithDecryption=True)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None
        try:
            keys = signing_keys(text)
        except ValueError as error:
            raise KeyToolError(f"{self.signing} does not hold signing keys ({error})") from error
        try:
            published = self.ssm.get_parameter(Name=self.public)["Parameter"]["Value"].split()
        except self.ssm.exceptions.ParameterNotFound:
            published = []
        expected = [public_key_text(key.public_key) for key in keys]
        if published != expected:
            raise KeyToolError(
                f"{self.public} does not hold the public halves of {self.signing}'s keys; "
                "fix it by hand (or delete both parameters and run create)"
            )
        return keys

    def write_signing(self, keys: Sequence[SigningKey]) -> None:
        """Write the signing keys (SecureString, overwriting)."""
        request: dict[str, Any] = {
            "Name": self.signing,
            "Value": " ".join(key.text() for key in keys),
            "Type": "SecureString",
            "Overwrite": True,
            "Description": "Job callbacks: Ed25519 signing keys (whsk_), current first; the callback sender's only",
        }
        if self.kms_key_id:
            request["KeyId"] = self.kms_key_id
        self.ssm.put_parameter(**request)

    def write_public(self, keys: Sequence[SigningKey]) -> None:
        """Write the public halves of ``keys`` (String, overwriting)."""
        self.ssm.put_parameter(
            Name=self.public,
            Value=" ".join(public_key_text(key.public_key) for key in keys),
            Type="String",
            Overwrite=True,
            Description="Job callbacks: Ed25519 public keys (whpk_) served at GET /api/v1/webhooks/public-key",
        )


def create(parameters: KeyParameters) -> list[SigningKey]:
    """Create both parameters with one new key; returns the keys.

    Raises:
        KeyToolError: the signing parameter exists already.
    """
    try:
        parameters.ssm.get_parameter(Name=parameters.signing)
    except parameters.ssm.exceptions.ParameterNotFound:
        pass
    else:
        raise KeyToolError(f"{parameters.signing} exists already: use rotate to add a key")
    keys = [SigningKey.generate()]
    parameters.write_signing(keys)
    parameters.write_public(keys)
    return keys


def ensure(parameters: KeyParameters) -> list[SigningKey]:
    """The keys the parameters hold, after creating both with a new key when the signing parameter is absent (the
    local stack's start).

    Raises:
        KeyToolError: as ``KeyParameters.current``.
    """
    return parameters.current() or create(parameters)


def rotate(parameters: KeyParameters) -> list[SigningKey]:
    """Add a new key after the current ones (public parameter first); returns the keys.

    Raises:
        KeyToolError: no keys yet (create first), or the parameters disagree.
    """
    keys = parameters.current()
    if keys is None:
        raise KeyToolError(f"{parameters.signing} does not exist: use create")
    keys = [*keys, SigningKey.generate()]
    parameters.write_public(keys)
    parameters.write_signing(keys)
    return keys


def retire(parameters: KeyParameters) -> list[SigningKey]:
    """Drop the oldest key (signing parameter first); returns the keys left.

    Raises:
        KeyToolError: fewer than two keys (nothing would sign), or the parameters disagree.
    """
    keys = parameters.current()
    if keys is None:
        raise KeyToolError(f"{parameters.signing} does not exist: use create")
    if len(keys) < 2:
        raise KeyToolError("only one key: rotate first, wait for receivers to fetch the new key, then retire")
    keys = keys[1:]
    parameters.write_signing(keys)
    parameters.write_public(keys)
    return keys


ACTIONS = {"create": create, "rotate": rotate, "retire": retire}


def main(argv: list[str] | None = None) -> int:
    """Run one step; prints the public keys (kid and whpk_) now published."""
    parser = argparse.ArgumentParser(prog="python -m local.webhook_keys", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=sorted(ACTIONS))
    parser.add_argument("--signing-key-parameter", default=DEFAULT_SIGNING_PARAMETER)
    parser.add_argument("--public-key-parameter", default=DEFAULT_PUBLIC_PARAMETER)
    parser.add_argument("--kms-key-id", default=None, help="the KMS key of the SecureString (default: aws/ssm)")
    args = parser.parse_args(argv)
    import boto3  # imported here: the module's functions take any client

    parameters = KeyParameters(
        boto3.client("ssm"), args.signing_key_parameter, args.public_key_parameter, args.kms_key_id or None
    )
    try:
        keys = ACTIONS[args.action](parameters)
    except KeyToolError as error:
        sys.stderr.write(f"webhook-keys {args.action}: {error}\n")
        return 1
    for key in jwks(key.public_key for key in keys)["keys"]:
        sys.stdout.write(f"{key['kid']}  {key['whpk']}\n")
    sys.stderr.write(
        f"{args.action}: {len(keys)} key(s) in {parameters.signing} (SecureString) and {parameters.public}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
