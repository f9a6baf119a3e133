"""A JSON Schema (draft 2020-12) validator for the subset docs/schemas/ uses.

Our own, so validating the verbs' JSON needs no extra package wherever the tests run (conda's
environment has no ``jsonschema``). Where ``jsonschema`` is importable the tests also run it, which
keeps this subset honest. Keywords understood: type, enum, const, properties, required,
additionalProperties, items, minimum, anyOf, oneOf, $ref (to ``#/$defs/...``) and $defs;
annotations (title, description, $schema, $id) are ignored. Any other keyword is an error, so a
schema cannot silently rely on something this checker skips.
"""

from __future__ import annotations

SUPPORTED = {
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minimum",
    "anyOf",
    "oneOf",
    "$ref",
    "$defs",
    "title",
    "description",
    "$schema",
    "$id",
}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _same(a, b) -> bool:
    # JSON equality: True is not 1
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def validate(instance, schema: dict, root: dict | None = None, path: str = "$") -> list[str]:
    """Every violation, as ``"<json path>: <what>"``; empty when ``instance`` is valid."""
    root = root if root is not None else schema
    unknown = set(schema) - SUPPORTED
    if unknown:
        return [f"{path}: schema uses unsupported keywords {sorted(unknown)}"]
    errors: list[str] = []
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            return [f"{path}: unsupported $ref {ref}"]
        target = root.get("$defs", {}).get(ref.split("/")[-1])
        if target is None:
            return [f"{path}: unresolved $ref {ref}"]
        errors += validate(instance, target, root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](instance) for t in types):
            return [*errors, f"{path}: expected {'/'.join(types)}, got {instance!r:.80}"]
    if "const" in schema and not _same(instance, schema["const"]):
        errors.append(f"{path}: expected {schema['const']!r}, got {instance!r:.80}")
    if "enum" in schema and not any(_same(instance, e) for e in schema["enum"]):
        errors.append(f"{path}: {instance!r:.80} not one of {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](instance) and instance < schema["minimum"]:
        errors.append(f"{path}: {instance} < minimum {schema['minimum']}")
    for key in ("anyOf", "oneOf"):
        if key in schema:
            passing = [not validate(instance, sub, root, path) for sub in schema[key]]
            if key == "anyOf" and not any(passing):
                errors.append(f"{path}: matches none of anyOf")
            if key == "oneOf" and sum(passing) != 1:
                errors.append(f"{path}: matches {sum(passing)} of oneOf (needs exactly 1)")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in instance:
                errors.append(f"{path}: missing required key {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, value in instance.items():
            sub = f"{path}.{name}"
            if name in props:
                errors += validate(value, props[name], root, sub)
            elif extra is False:
                errors.append(f"{path}: unexpected key {name!r}")
            elif isinstance(extra, dict):
                errors += validate(value, extra, root, sub)
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(instance):
            errors += validate(item, schema["items"], root, f"{path}[{i}]")
    return errors
