#!/usr/bin/env python3
"""The custom resources in deploy/kubernetes (KEDA's ScaledObject, the Prometheus Operator's ServiceMonitor) against
their CRDs' own schemas: each CRD file given is read for the openAPIV3Schema of every version it serves, and every
manifest of that group, version and kind is validated with it (jsonschema), strictly: a field the schema does not
name is an error, as `kubectl apply --validate=strict` would say, unless the schema keeps unknown fields.

The CRD files come from the projects themselves (KEDA: config/crd/bases/keda.sh_scaledobjects.yaml; the Prometheus
Operator: example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml). The test command cannot fetch
them (CI reaches only Debian's and PyPI's mirrors), so this is a documented check: docs/operations.md says how it
ran. Needs PyYAML and jsonschema (scripts/e2e/deploy.sh's venv has both).
    python scripts/check-crd-manifests.py CRD.yaml [CRD.yaml ...]
"""
import copy
import glob
import os
import sys

import jsonschema
import yaml


def strict(schema):
    """A copy in which objects with named properties allow no others (unless the schema keeps unknown fields)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return schema


def main(crd_files):
    schemas = {}
    for path in crd_files:
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    schema = version.get("schema", {}).get("openAPIV3Schema")
                    if schema and version.get("served", True):
                        schemas[(f"{group}/{version['name']}", kind)] = strict(schema)
    if not schemas:
        sys.exit("no CustomResourceDefinition with a schema in the files given")
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "kubernetes")
    checked, failures = 0, 0
    kinds = {kind for _, kind in schemas}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)):
        with open(path) as f:
            documents = list(yaml.safe_load_all(f))
        for document in documents:
            if not isinstance(document, dict) or document.get("kind") not in kinds:
                continue
            key = (document.get("apiVersion"), document["kind"])
            name = f"{os.path.relpath(path, root)}: {key[1]} {document.get('metadata', {}).get('name')}"
            if key not in schemas:
                print(f"FAIL: {name}: apiVersion {key[0]} is not one the CRD serves ({[k[0] for k in schemas if k[1] == key[1]]})")
                failures += 1
                continue
            errors = sorted(jsonschema.Draft7Validator(schemas[key]).iter_errors(document), key=lambda e: list(e.path))
            checked += 1
            for error in errors:
                print(f"FAIL: {name}: {'.'.join(map(str, error.path)) or '(top)'}: {error.message}")
            failures += len(errors)
            if not errors:
                print(f"ok: {name} validates against its CRD's schema ({key[0]})")
    if checked == 0:
        sys.exit("no manifest of the CRDs' kinds found")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
