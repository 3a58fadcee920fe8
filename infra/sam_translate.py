#!/usr/bin/env python3
"""Expands an AWS SAM template into plain CloudFormation JSON with the real SAM translator.

cfn-lint 1.x checks a SAM template against SAM's schemas without running the transform, and in
that mode it skips checks that the expanded template gets (function runtimes, IAM actions of
inline policies). Linting the expanded template as well closes that gap:

    python infra/sam_translate.py infra/template.yaml target/template.expanded.json
    cfn-lint target/template.expanded.json

and the same for infra/template-kinesis.yaml (the Kinesis variant).

Needs the packages in infra/requirements-sam.txt (in their own venv). Works offline: local
CodeUri paths, which `sam deploy` would upload to S3, are replaced by a placeholder S3 location,
and the region is a placeholder unless AWS_REGION / AWS_DEFAULT_REGION is set. It does not
replace `sam deploy`, which also packages the code.
"""

import json
import os
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: sam_translate.py TEMPLATE.yaml OUT.json", file=sys.stderr)
        return 2
    src, dst = sys.argv[1], sys.argv[2]
    # The translator asks boto3 for a region to fill in pseudo parameters; any region will do.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    os.environ["AWS_DEFAULT_REGION"] = region

    from samtranslator.public.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    with open(src, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(
            props.get("CodeUri"), str
        ) and not props["CodeUri"].startswith("s3://"):
            props["CodeUri"] = "s3://placeholder-bucket/function.zip"

    class NoManagedPolicies:
        """SAM looks up AWS managed policy names only for `Policies: [Name]` shorthands."""

        def load(self):
            return {}

    try:
        expanded = transform(template, {}, NoManagedPolicies())
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"SAM transform error: {cause.message}", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(expanded, f, indent=1)
        f.write("\n")
    print(f"{src}: expanded {len(expanded.get('Resources', {}))} resources into {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
