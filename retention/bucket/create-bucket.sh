#!/usr/bin/env bash
# Create the archive bucket the way pg-audit-shipper requires: Object Lock (which turns versioning
# on, for good), default COMPLIANCE retention of six years, public access blocked, SSE-S3 default.
# Object Lock can only be enabled when a bucket is created.
set -euo pipefail
bucket=${1:?usage: create-bucket.sh BUCKET [REGION]}
region=${2:-${AWS_REGION:-us-east-1}}
here=$(cd "$(dirname "$0")" && pwd)
if [ "$region" = us-east-1 ]; then
  aws s3api create-bucket --bucket "$bucket" --object-lock-enabled-for-bucket
else
  aws s3api create-bucket --bucket "$bucket" --object-lock-enabled-for-bucket \
    --create-bucket-configuration "LocationConstraint=$region"
fi
aws s3api put-object-lock-configuration --bucket "$bucket" \
  --object-lock-configuration "file://$here/object-lock-configuration.json"
aws s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
aws s3api put-bucket-encryption --bucket "$bucket" --server-side-encryption-configuration \
  '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
aws s3api get-object-lock-configuration --bucket "$bucket"
