#!/usr/bin/env bash
# Lint the IAM policy template with parliament (`pip install parliament==1.6.4`), as .ci/run does:
# render it with sample values (deploy/aws/render-iam-policy.sh), run parliament with its
# community auditors at severity LOW and up, and fail on any finding except the false positives
# listed below, each matched exactly (issue + detail or actions) and with its reason. A listed
# false positive that parliament no longer reports fails too, so the list never outlives its reason.
set -euo pipefail

dir=$(dirname "$0")
command -v parliament >/dev/null 2>&1 || {
  echo "lint-iam-policy: parliament is not on PATH (python3 -m pip install 'parliament==1.6.4')" >&2
  exit 2
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

CLUSTER_NAME=ci-cluster VPC_ID=vpc-0123456789abcdef0 ACCOUNT_ID=123456789012 REGION=us-east-1 \
  "$dir/render-iam-policy.sh" >"$tmp/policy.json"

# parliament exits 1 when it reports findings; anything else is parliament failing.
rc=0
parliament --json --include-community-auditors --minimum_severity LOW --files "$tmp/policy.json" \
  </dev/null >"$tmp/findings.jsonl" || rc=$?
if [[ $rc -ne 0 && $rc -ne 1 ]]; then
  cat "$tmp/findings.jsonl" >&2
  echo "lint-iam-policy: parliament failed (exit $rc)" >&2
  exit 1
fi

python3 - "$tmp/findings.jsonl" <<'PY'
import json
import sys

# (issue, field, exact value, reason)
FALSE_POSITIVES = [
    (
        "UNKNOWN_CONDITION_FOR_ACTION",
        "detail",
        "Unknown condition elasticloadbalancing:CreateAction for action elasticloadbalancing:AddTags",
        "parliament's database holds Classic ELB and ELBv2 under the one prefix elasticloadbalancing, and "
        "only the ELBv2 entries list elasticloadbalancing:CreateAction for AddTags; AWS documents it for "
        "ELBv2's AddTags (tag on create), which is what statement TagElbResourcesOnCreate is for",
    ),
    (
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "actions",
        ["iam:createservicelinkedrole"],
        "iam:CreateServiceLinkedRole is limited to Elastic Load Balancing's own service-linked role (its "
        "ARN and iam:AWSServiceName); AWS needs it once per account, for the first load balancer",
    ),
    (
        "RESOURCE_MISMATCH",
        "detail",
        [{"action": "ec2:CreateSecurityGroup", "required_format": "arn:*:ec2:*:*:security-group/*"}],
        "CreateSecurityGroup is authorized on two resources, the VPC and the new group; AWS's own example "
        "grants them in two statements (the VPC without a tag condition, since the request's tags are the "
        "new group's), and parliament wants the group's ARN in both: statement "
        "CreateSecurityGroupsOnlyInTheClusterVpc is the VPC half",
    ),
]

findings = []
with open(sys.argv[1]) as f:
    for line in f:
        if line.strip():
            findings.append(json.loads(line))

def suppressed_by(finding):
    for i, (issue, field, value, _) in enumerate(FALSE_POSITIVES):
        got = finding.get("location", {}).get(field) if field == "actions" else finding.get(field)
        if finding.get("issue") == issue and got == value:
            return i
    return None

seen = set()
real = []
for finding in findings:
    i = suppressed_by(finding)
    if i is None:
        real.append(finding)
    else:
        seen.add(i)

for i, (issue, _, value, reason) in enumerate(FALSE_POSITIVES):
    if i in seen:
        print(f"parliament: ignored {issue} ({value}): {reason}")
# A real finding can stop an auditor early (and so hide a false positive): stale only without one.
stale = [] if real else [FALSE_POSITIVES[i] for i in range(len(FALSE_POSITIVES)) if i not in seen]
for issue, _, value, _ in stale:
    print(f"parliament no longer reports {issue} ({value}): remove it from deploy/aws/lint-iam-policy.sh",
          file=sys.stderr)
for finding in real:
    print(f"parliament: {finding['severity']} {finding['issue']}: {finding['title']}: {finding['detail']} "
          f"at {finding['location']}", file=sys.stderr)
if real or stale:
    sys.exit(1)
print(f"parliament: deploy/aws/iam-policy.json (rendered) has no finding left ({len(findings)} reported, "
      "all known false positives)")
PY
