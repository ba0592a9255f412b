#!/usr/bin/env bash
# Render deploy/aws/iam-policy.json (a template) for one cluster, on stdout:
#
#   CLUSTER_NAME=prod VPC_ID=vpc-0123456789abcdef0 ACCOUNT_ID=123456789012 REGION=eu-west-1 \
#     deploy/aws/render-iam-policy.sh > cloudlb-iam-policy.json
#
# CLUSTER_NAME is cloudlb's --cluster-name, VPC_ID its --aws-vpc-id, REGION its --aws-region;
# AWS_PARTITION defaults to "aws" (aws-cn, aws-us-gov). Each value is checked before it is
# substituted, so the output is valid JSON with no placeholder left; see deploy/aws/README.md for
# what each statement allows. The Rust test that checks the policy against the provider's calls
# (providers/aws/tests/alb.rs) substitutes the same five placeholders.
set -euo pipefail

template="$(dirname "$0")/iam-policy.json"
AWS_PARTITION="${AWS_PARTITION:-aws}"

fail() {
  echo "render-iam-policy: $*" >&2
  exit 2
}

[[ -n "${CLUSTER_NAME:-}" && -n "${VPC_ID:-}" && -n "${ACCOUNT_ID:-}" && -n "${REGION:-}" ]] ||
  fail "set CLUSTER_NAME, VPC_ID, ACCOUNT_ID and REGION (and AWS_PARTITION for aws-cn / aws-us-gov)"
# The same rule as `cloudlb run --cluster-name`: it is in every ownership tag the policy checks.
[[ "$CLUSTER_NAME" =~ ^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$ ]] ||
  fail "CLUSTER_NAME=$CLUSTER_NAME: use cloudlb's --cluster-name (1-40 lowercase letters, digits and dashes)"
[[ "$VPC_ID" =~ ^vpc-[0-9a-f]{8,17}$ ]] || fail "VPC_ID=$VPC_ID is not a VPC id (vpc-0123456789abcdef0)"
[[ "$ACCOUNT_ID" =~ ^[0-9]{12}$ ]] || fail "ACCOUNT_ID=$ACCOUNT_ID is not a 12-digit AWS account id"
[[ "$REGION" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]] || fail "REGION=$REGION is not an AWS region (e.g. eu-west-1)"
[[ "$AWS_PARTITION" =~ ^aws(-cn|-us-gov)?$ ]] || fail "AWS_PARTITION=$AWS_PARTITION: use aws, aws-cn or aws-us-gov"

out=$(sed -e "s/\${AWS_PARTITION}/$AWS_PARTITION/g" \
  -e "s/\${ACCOUNT_ID}/$ACCOUNT_ID/g" \
  -e "s/\${REGION}/$REGION/g" \
  -e "s/\${VPC_ID}/$VPC_ID/g" \
  -e "s/\${CLUSTER_NAME}/$CLUSTER_NAME/g" \
  "$template")
if grep -q '\${' <<<"$out"; then
  fail "placeholders left unrendered: $(grep -o '\${[A-Za-z_]*}' <<<"$out" | sort -u | tr '\n' ' ')"
fi
printf '%s\n' "$out"
