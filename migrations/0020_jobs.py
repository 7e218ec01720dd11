from tortoise import migrations
from tortoise.migrations import operations as ops
from models.campaign import CampaignStatus
from models.job import JobState
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0019_board')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Job',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', null=True, db_constraint=True, to_field='id', related_name='jobs', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=50)),
                ('key', fields.CharField(unique=True, max_length=200)),
                ('payload', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('state', fields.CharEnumField(default=JobState.QUEUED, description='QUEUED: QUEUED\nRUNNING: RUNNING\nDONE: DONE\nFAILED: FAILED\nCANCELLED: CANCELLED', enum_type=JobState, max_length=10)),
                ('attempts', fields.IntField(default=0)),
                ('max_attempts', fields.IntField(default=5)),
                ('run_after', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('locked_by', fields.CharField(null=True, max_length=100)),
                ('locked_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'job', 'app': 'models', 'indexes': [Index(fields=['organization_id', 'state', 'id']), Index(fields=['state', 'run_after'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AlterField(
            model_name='Campaign',
            name='status',
            field=fields.CharEnumField(default=CampaignStatus.PLANNED, description='PLANNED: PLANNED\nLAUNCHING: LAUNCHING\nACTIVE: ACTIVE\nCOMPLETED: COMPLETED\nCANCELLED: CANCELLED', enum_type=CampaignStatus, max_length=10),
        ),
        ops.AddField(
            model_name='Campaign',
            name='failed_count',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Campaign',
            name='members_count',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Campaign',
            name='messaged_count',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Campaign',
            name='sent_count',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Campaign',
            name='skipped_count',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Message',
            name='retry_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        # Campaigns launched before: their progress counts from their members and messages.
        ops.RunSQL(
        'UPDATE "campaign" SET '
        '"members_count" = (SELECT COUNT(*) FROM "campaign_member" m WHERE m."campaign_id" = "campaign"."id"), '
        '"messaged_count" = (SELECT COUNT(*) FROM "campaign_member" m WHERE m."campaign_id" = "campaign"."id" AND m."status" = \'MESSAGED\'), '
        '"skipped_count" = (SELECT COUNT(*) FROM "campaign_member" m WHERE m."campaign_id" = "campaign"."id" AND m."status" = \'SKIPPED\'), '
        '"sent_count" = (SELECT COUNT(*) FROM "message" g WHERE g."campaign_id" = "campaign"."id" AND g."status" = \'SENT\'), '
        '"failed_count" = (SELECT COUNT(*) FROM "message" g WHERE g."campaign_id" = "campaign"."id" AND g."status" = \'FAILED\') '
        'WHERE "launched_at" IS NOT NULL'
        ),
    ]
