from tortoise import migrations
from tortoise.migrations import operations as ops
from models.event import NotificationKind
from models.webhook import DeliveryStatus, WebhookStatus
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index


# Notifications without an event (a webhook endpoint disabled, for the admins): event_id becomes
# nullable and three columns are added. Tortoise's own SQL for it would fail on PostgreSQL when
# notifications exist (a NOT NULL column without a default) and, on SQLite, rebuild the table
# without its unique constraint and indexes: the state changes below are Tortoise's, the SQL
# is written here.


class _StateOnlyAlterField(ops.AlterField):
    async def database_forward(self, *args, **kwargs):  # the SQL: _notifications_without_event
        return None


class _StateOnlyAddField(ops.AddField):
    async def database_forward(self, *args, **kwargs):  # the SQL: _notifications_without_event
        return None


_POSTGRES = [
    'ALTER TABLE "notification" ALTER COLUMN "event_id" DROP NOT NULL',
    """ALTER TABLE "notification" ADD COLUMN "kind" VARCHAR(30) NOT NULL DEFAULT 'EVENT'""",
    'ALTER TABLE "notification" ALTER COLUMN "kind" DROP DEFAULT',
    'ALTER TABLE "notification" ADD COLUMN "message" VARCHAR(1000)',
    'ALTER TABLE "notification" ADD COLUMN "webhook_endpoint_id" INT',
]
_SQLITE = [
    'CREATE TABLE "notification_new" ("id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
    '"read_at" TIMESTAMP, "created_at" TIMESTAMP NOT NULL, '
    '"event_id" BIGINT REFERENCES "event" ("id") ON DELETE CASCADE, '
    '"user_id" INT NOT NULL REFERENCES "crm_user" ("id") ON DELETE CASCADE, '
    """"kind" VARCHAR(30) NOT NULL DEFAULT 'EVENT', "message" VARCHAR(1000), """
    '"webhook_endpoint_id" INT, '
    'CONSTRAINT "uid_notificatio_user_id_7a4ff6" UNIQUE ("user_id", "event_id"))',
    'INSERT INTO "notification_new" ("id", "read_at", "created_at", "event_id", "user_id") '
    'SELECT "id", "read_at", "created_at", "event_id", "user_id" FROM "notification"',
    'DROP TABLE "notification"',
    'ALTER TABLE "notification_new" RENAME TO "notification"',
    'CREATE INDEX "idx_notificatio_user_id_9f8ad4" ON "notification" ("user_id", "read_at")',
    'CREATE INDEX "idx_notificatio_user_id_34957c" ON "notification" ("user_id", "id")',
]


async def _notifications_without_event(apps, schema_editor):
    client = schema_editor.client
    postgres = client.capabilities.dialect == "postgres"
    for statement in _POSTGRES if postgres else _SQLITE:
        await client.execute_script(statement)


class Migration(migrations.Migration):
    dependencies = [("models", "0020_jobs")]

    initial = False

    operations = [
        ops.CreateModel(
            name='WebhookEndpoint',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='webhook_endpoints', on_delete=OnDelete.CASCADE)),
                ('url', fields.CharField(max_length=2000)),
                ('description', fields.CharField(default='', max_length=500)),
                ('change_types', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('secret', fields.CharField(max_length=100)),
                ('previous_secret', fields.CharField(null=True, max_length=100)),
                ('previous_secret_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('status', fields.CharEnumField(default=WebhookStatus.ACTIVE, description='ACTIVE: ACTIVE\nPAUSED: PAUSED\nDISABLED: DISABLED', enum_type=WebhookStatus, max_length=10)),
                ('disabled_reason', fields.CharField(null=True, max_length=500)),
                ('cursor', fields.CharField(max_length=400)),
                ('position', fields.BigIntField(default=0)),
                ('redeliver_through', fields.BigIntField(default=0)),
                ('failing_since', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('failures', fields.IntField(default=0)),
                ('retry_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('lease_holder', fields.CharField(null=True, max_length=100)),
                ('lease_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', db_constraint=True, to_field='id', related_name='webhook_endpoints', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'webhook_endpoint', 'app': 'models', 'indexes': [Index(fields=['organization_id', 'id']), Index(fields=['status', 'organization_id', 'id'])], 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization_id', fields.IntField()),
                ('endpoint', fields.ForeignKeyField('models.WebhookEndpoint', source_field='endpoint_id', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.CASCADE)),
                ('webhook_id', fields.CharField(max_length=400)),
                ('record_type', fields.CharField(max_length=30)),
                ('op', fields.CharField(max_length=10)),
                ('status', fields.CharEnumField(description='PENDING: PENDING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED', enum_type=DeliveryStatus, max_length=10)),
                ('attempt_count', fields.IntField(default=0)),
                ('attempts', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('redelivery', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'webhook_delivery', 'app': 'models', 'indexes': [Index(fields=['organization_id', 'endpoint_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        _StateOnlyAlterField(
            model_name='Notification',
            name='event',
            field=fields.ForeignKeyField('models.Event', source_field='event_id', null=True, db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE),
        ),
        _StateOnlyAddField(
            model_name='Notification',
            name='kind',
            field=fields.CharEnumField(default=NotificationKind.EVENT, description='EVENT: EVENT\nWEBHOOK_ENDPOINT_DISABLED: WEBHOOK_ENDPOINT_DISABLED', enum_type=NotificationKind, max_length=30),
        ),
        _StateOnlyAddField(
            model_name='Notification',
            name='message',
            field=fields.CharField(null=True, max_length=1000),
        ),
        _StateOnlyAddField(
            model_name='Notification',
            name='webhook_endpoint_id',
            field=fields.IntField(null=True),
        ),
        ops.RunPython(_notifications_without_event),
    ]
