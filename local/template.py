"""Reads ``template.yaml`` for the local stack: the short-form intrinsic tags, parameters, and the few
intrinsic functions the local stack resolves (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``).

``Fn::If`` is resolved too, against the template's ``Conditions`` (``Fn::Equals``, ``Fn::Not``, ``Fn::And``,
``Fn::Or`` and ``Condition``, over parameters), as is a resource's own ``Condition`` (``Resolver.condition``).
Anything else met while resolving a value the local stack needs (``Fn::Join``, ``Fn::ImportValue``, ...) raises
``UnsupportedTemplate`` naming where it was, rather than guessing. Values the local stack never needs (IAM
policies) are never resolved.

The template's ``Rules`` are evaluated against the parameter values, as CloudFormation does before a deploy
(``Resolver.broken_rules``), so that the local stack refuses the parameters a deploy would refuse. Only the rule
functions the template uses are emulated (``Ref`` to a parameter, ``Fn::Equals``, ``Fn::Not``); any other is
``UnsupportedTemplate``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


class UnsupportedTemplate(Exception):
    """The template uses something the local stack does not emulate; the message says what and where."""


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation's short forms (``!Ref X``) as their long forms."""


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    """The template at ``path`` as plain data, short-form tags turned into long-form intrinsics."""
    with path.open(encoding="utf-8") as stream:
        # _CfnLoader is a SafeLoader subclass.
        data = yaml.load(stream, Loader=_CfnLoader)  # noqa: S506 # nosec B506
    if not isinstance(data, dict) or "Resources" not in data:
        raise UnsupportedTemplate(f"{path} is not a CloudFormation template")
    return data


@dataclass
class Resolver:
    """Resolves intrinsic functions against parameters, pseudo parameters and physical resources.

    Args:
        template: the loaded template.
        stack_name: the value of ``AWS::StackName``.
        parameter_overrides: parameter values that replace the defaults (like ``--parameter-overrides``).
        physical: called with a logical id, returns the resource's ``Ref`` value and attributes; the local
            stack creates the resource on first call.
    """

    template: Mapping[str, Any]
    stack_name: str
    physical: Callable[[str], Mapping[str, str]]
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)

    def parameter(self, name: str) -> str:
        """A parameter's value (override, else default) as text, as CloudFormation passes it."""
        spec = self.template.get("Parameters", {}).get(name)
        if spec is None:
            raise UnsupportedTemplate(f"unknown parameter {name}")
        if name in self.parameter_overrides:
            value: Any = self.parameter_overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise UnsupportedTemplate(f"parameter {name} has no default; pass it as an override")
        allowed = spec.get("AllowedValues")
        if allowed is not None and str(value) not in [str(item) for item in allowed]:
            raise UnsupportedTemplate(f"parameter {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, str(value)):
            raise UnsupportedTemplate(f"parameter {name}={value!r} does not match {pattern}")
        return str(value)

    def pseudo(self, name: str) -> str:
        """A pseudo parameter (``AWS::Region``, ``AWS::AccountId``, ...)."""
        values = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/local",
        }
        if name not in values:
            raise UnsupportedTemplate(f"pseudo parameter {name} is not emulated")
        return values[name]

    def ref(self, name: str) -> str:
        """The value of ``Ref: name``."""
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.template.get("Parameters", {}):
            return self.parameter(name)
        if name in self.template["Resources"]:
            return self.physical(name)["Ref"]
        raise UnsupportedTemplate(f"Ref to unknown name {name}")

    def ref_value(self, name: str) -> str | list[str]:
        """The value of ``Ref: name`` as CloudFormation passes it: a list for a ``CommaDelimitedList``
        parameter, text otherwise."""
        spec = self.template.get("Parameters", {}).get(name)
        if spec is not None and spec.get("Type") == "CommaDelimitedList":
            return [item.strip() for item in self.parameter(name).split(",")]
        return self.ref(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        """The value of ``Fn::GetAtt: [logical_id, attribute]``."""
        if logical_id not in self.template["Resources"]:
            raise UnsupportedTemplate(f"GetAtt of unknown resource {logical_id}")
        attributes = self.physical(logical_id)
        if attribute not in attributes:
            raise UnsupportedTemplate(f"GetAtt {logical_id}.{attribute} is not emulated")
        return attributes[attribute]

    def sub(self, text: str, variables: Mapping[str, Any] | None = None) -> str:
        """The value of ``Fn::Sub`` (``${Name}``, ``${Resource.Attr}``, ``${!Literal}``)."""
        variables = variables or {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name], f"Fn::Sub variable {name}"))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value: Any, where: str = "template") -> Any:
        """``value`` with every intrinsic function resolved, recursively.

        Raises:
            UnsupportedTemplate: an intrinsic other than ``Ref``, ``Fn::GetAtt`` and ``Fn::Sub``.
        """
        if isinstance(value, list):
            return [self.resolve(item, where) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref_value(argument)
            if key == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Sub":
                if isinstance(argument, list):
                    return self.sub(argument[0], argument[1])
                return self.sub(argument)
            if key == "Fn::If":
                if not isinstance(argument, list) or len(argument) != 3:
                    raise UnsupportedTemplate(f"Fn::If in {where} takes a condition's name and two values")
                chosen = argument[1] if self.condition(str(argument[0])) else argument[2]
                return self.resolve(chosen, where)
            if key.startswith("Fn::") or key == "Condition":
                raise UnsupportedTemplate(f"{key} in {where} is not emulated by the local stack")
        return {key: self.resolve(item, f"{where}.{key}") for key, item in value.items()}

    def condition(self, name: str) -> bool:
        """The value of the template's condition ``name`` for these parameter values, as CloudFormation
        evaluates ``Conditions`` (``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition`` and ``Ref`` to
        a parameter).

        Raises:
            UnsupportedTemplate: an unknown condition, or a function the local stack does not evaluate.
        """
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise UnsupportedTemplate(f"unknown condition {name}")
        return self._rule_condition(conditions[name], f"Conditions.{name}", in_conditions=True)

    def broken_rules(self) -> list[str]:
        """The ``AssertDescription`` of every assertion of the template's ``Rules`` that fails for these parameter
        values, in template order (empty when the deploy would go ahead). A rule whose ``RuleCondition`` is false
        does not apply, as in CloudFormation.

        Raises:
            UnsupportedTemplate: a rule uses a function the local stack does not emulate, or is malformed.
        """
        broken = []
        for name, rule in (self.template.get("Rules") or {}).items():
            where = f"Rules.{name}"
            if not isinstance(rule, dict) or not isinstance(rule.get("Assertions"), list):
                raise UnsupportedTemplate(f"{where} has no list of Assertions")
            if "RuleCondition" in rule and not self._rule_condition(rule["RuleCondition"], f"{where}.RuleCondition"):
                continue
            for index, assertion in enumerate(rule["Assertions"]):
                if not self._rule_condition(assertion.get("Assert"), f"{where}.Assertions[{index}].Assert"):
                    broken.append(str(assertion.get("AssertDescription") or f"{where} assertion {index} failed"))
        return broken

    def _rule_condition(self, value: Any, where: str, *, in_conditions: bool = False) -> bool:
        result = self._rule_value(value, where, in_conditions=in_conditions)
        if not isinstance(result, bool):
            raise UnsupportedTemplate(f"{where} is not a condition (true or false)")
        return result

    def _rule_value(self, value: Any, where: str, *, in_conditions: bool = False) -> Any:
        """A value inside a rule or (``in_conditions``) a condition: ``Ref`` to a parameter, ``Fn::Equals``,
        ``Fn::Not``, ``Fn::And``, ``Fn::Or`` (2 to 10 conditions), ``Condition`` (conditions only), or a literal."""
        if not isinstance(value, dict):
            if isinstance(value, list):
                raise UnsupportedTemplate(f"{where}: a list outside a rule function is not emulated")
            return value if isinstance(value, bool) else str(value)
        if len(value) != 1:
            raise UnsupportedTemplate(f"{where}: {sorted(value)} is not one rule function")
        ((key, argument),) = value.items()
        if key == "Ref":
            if argument not in self.template.get("Parameters", {}):
                raise UnsupportedTemplate(f"{where}: Ref {argument} is not a parameter (rules see parameters only)")
            return self.ref_value(argument)
        if key == "Fn::Equals":
            if not isinstance(argument, list) or len(argument) != 2:
                raise UnsupportedTemplate(f"{where}: Fn::Equals takes two values")
            first = self._rule_value(argument[0], where, in_conditions=in_conditions)
            return first == self._rule_value(argument[1], where, in_conditions=in_conditions)
        if key == "Fn::Not":
            if not isinstance(argument, list) or len(argument) != 1:
                raise UnsupportedTemplate(f"{where}: Fn::Not takes a list of one condition")
            return not self._rule_condition(argument[0], where, in_conditions=in_conditions)
        if key in ("Fn::And", "Fn::Or") and isinstance(argument, list) and 2 <= len(argument) <= 10:
            values = [self._rule_condition(item, where, in_conditions=in_conditions) for item in argument]
            return all(values) if key == "Fn::And" else any(values)
        if key == "Condition" and isinstance(argument, str) and in_conditions:  # rules cannot name conditions
            return self.condition(argument)
        raise UnsupportedTemplate(f"{key} in {where} is not emulated by the local stack")
