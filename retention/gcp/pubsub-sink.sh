#!/bin/sh
# pgaudit's entries of one Cloud SQL / AlloyDB instance, as they arrive, through a Pub/Sub topic:
# for ingest --log-source pubsub (or ship --log-source pubsub), when the instance writes more than
# Cloud Logging's read quota lets --log-source cloud-logging follow (about 1,000 entries a second).
# Run once per instance with gcloud, as a project owner. Data Access audit logs must be on first
# (data-access-audit-config.yaml).
#
#   PROJECT=clinic-prj INSTANCE=clinic-db INGESTER=pgaudit-ingester@clinic-prj.iam.gserviceaccount.com \
#     sh retention/gcp/pubsub-sink.sh
#
# Then: pg-audit-shipper ship --log-source pubsub --pubsub-subscription projects/$PROJECT/subscriptions/pgaudit-ingest \
#   --gcp-project $PROJECT --gcp-instance $INSTANCE ...   (with the ingester's service account)
#
# Least privilege, and why it matters here: whoever may publish to the topic can add made-up pgaudit
# entries, and whoever may pull from the subscription can take true ones away (README, trust model).
# So the topic is granted to the sink's writer identity alone and the subscription to the ingester
# alone. Project-level roles (Owner, Editor, Pub/Sub Admin, Editor or Publisher and Subscriber granted
# on the project) reach both too: review who holds them.
set -eu
: "${PROJECT:?the Google Cloud project}"
: "${INSTANCE:?the Cloud SQL or AlloyDB instance id}"
: "${INGESTER:?the ingester's service account e-mail}"
TOPIC=${TOPIC:-pgaudit}
SUBSCRIPTION=${SUBSCRIPTION:-pgaudit-ingest}
SINK=${SINK:-pgaudit-to-pubsub}

gcloud pubsub topics create "$TOPIC" --project "$PROJECT"

# The same entries --log-source cloud-logging lists (src/capture/ingest/cloud-logging.ts, windowFilter).
gcloud logging sinks create "$SINK" "pubsub.googleapis.com/projects/$PROJECT/topics/$TOPIC" --project "$PROJECT" \
  --log-filter="logName=\"projects/$PROJECT/logs/cloudaudit.googleapis.com%2Fdata_access\" AND protoPayload.request.\"@type\"=(\"type.googleapis.com/google.cloud.sql.audit.v1.PgAuditEntry\" OR \"type.googleapis.com/google.cloud.alloydb.audit.v1.PgAuditEntry\") AND (resource.labels.database_id=\"$PROJECT:$INSTANCE\" OR resource.labels.instance_id=\"$INSTANCE\")"

WRITER=$(gcloud logging sinks describe "$SINK" --project "$PROJECT" --format='value(writerIdentity)')
gcloud pubsub topics add-iam-policy-binding "$TOPIC" --project "$PROJECT" --member="$WRITER" --role=roles/pubsub.publisher

# 7 days unacknowledged before Pub/Sub deletes a message (no trace of it reaches the trail): alert on
# pubsub.googleapis.com/subscription/oldest_unacked_message_age well below that. The ingester
# acknowledges only what it stored, and extends the deadline of what it holds (chunks of a long line).
gcloud pubsub subscriptions create "$SUBSCRIPTION" --project "$PROJECT" --topic "$TOPIC" \
  --ack-deadline=60 --message-retention-duration=7d --expiration-period=never
gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --project "$PROJECT" \
  --member="serviceAccount:$INGESTER" --role=roles/pubsub.subscriber
