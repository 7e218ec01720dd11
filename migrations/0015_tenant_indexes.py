from tortoise import migrations
from tortoise.migrations import operations as ops
from models.base import LiveIndex
from tortoise import fields
from tortoise.indexes import Index


class DropFieldIndex(ops.AlterField):
    """An AlterField that only drops the field's own index (`db_index=True` gone): every index of
    a tenant table now starts with the organization (or a key implying it). On SQLite Tortoise
    would remake the whole table for it, which foreign keys refuse."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if not state_editor:
            return
        model = old_state.apps.get_model(f"{app_label}.{self.model_name}")
        column = model._meta.fields_map[self.name].source_field or self.name
        name = state_editor._generate_index_name("idx", model, [column])
        await state_editor.client.execute_script(f'DROP INDEX IF EXISTS "{name}"')

class Migration(migrations.Migration):
    dependencies = [('models', '0014_sync_order')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PrunedChanges',
            fields=[
                ('organization_id', fields.IntField(primary_key=True, unique=True, db_index=True)),
                ('through_id', fields.BigIntField()),
            ],
            options={'table': 'sync_pruned', 'app': 'models', 'pk_attr': 'organization_id', 'table_description': "An organization's newest change that the retention forgot (older cursors resync)."},
            bases=['Model'],
        ),
        DropFieldIndex(
            model_name='Account',
            name='deleted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        DropFieldIndex(
            model_name='Account',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Account',
            index=LiveIndex(fields=['organization_id', 'id'], name='account_by_id_live'),
        ),
        ops.AddIndex(
            model_name='Account',
            index=LiveIndex(fields=['organization_id', 'name', 'id'], name='account_name_live'),
        ),
        ops.AddIndex(
            model_name='Account',
            index=LiveIndex(fields=['organization_id', 'updated_at', 'id'], name='account_updated_live'),
        ),
        ops.AddIndex(
            model_name='Account',
            index=LiveIndex(fields=['organization_id', 'owner_id', 'id'], name='account_owner_live'),
        ),
        DropFieldIndex(
            model_name='Activity',
            name='deleted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        DropFieldIndex(
            model_name='Activity',
            name='scheduled_at',
            field=fields.DatetimeField(auto_now=False, auto_now_add=False),
        ),
        DropFieldIndex(
            model_name='Activity',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Activity',
            index=LiveIndex(fields=['organization_id', 'scheduled_at', 'id'], name='activity_scheduled_live'),
        ),
        ops.AddIndex(
            model_name='Activity',
            index=LiveIndex(fields=['organization_id', 'updated_at', 'id'], name='activity_updated_live'),
        ),
        ops.AddIndex(
            model_name='Activity',
            index=LiveIndex(fields=['account_id', 'scheduled_at', 'id'], name='activity_account_live'),
        ),
        ops.AddIndex(
            model_name='Activity',
            index=LiveIndex(fields=['contact_id', 'scheduled_at', 'id'], name='activity_contact_live'),
        ),
        ops.AddIndex(
            model_name='Activity',
            index=LiveIndex(fields=['lead_id', 'scheduled_at', 'id'], name='activity_lead_live'),
        ),
        ops.AddIndex(
            model_name='Activity',
            index=LiveIndex(fields=['opportunity_id', 'scheduled_at', 'id'], name='activity_opportunity_live'),
        ),
        ops.AddIndex(
            model_name='ActivityAttendee',
            index=Index(fields=['contact_id', 'activity_id']),
        ),
        DropFieldIndex(
            model_name='ApiKey',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='ApiKey',
            index=Index(fields=['organization_id', 'id']),
        ),
        DropFieldIndex(
            model_name='AuthToken',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='AuthToken',
            index=Index(fields=['user_id', 'id']),
        ),
        DropFieldIndex(
            model_name='Campaign',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Campaign',
            index=Index(fields=['organization_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Campaign',
            index=Index(fields=['organization_id', 'updated_at', 'id']),
        ),
        DropFieldIndex(
            model_name='CampaignCost',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='CampaignCost',
            index=Index(fields=['campaign_id', 'id']),
        ),
        ops.AddIndex(
            model_name='CampaignMember',
            index=Index(fields=['campaign_id', 'id']),
        ),
        ops.AddIndex(
            model_name='CampaignMember',
            index=Index(fields=['contact_id', 'campaign_id']),
        ),
        ops.AddIndex(
            model_name='Change',
            index=Index(fields=['organization_id', 'id']),
        ),
        DropFieldIndex(
            model_name='Comment',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Comment',
            index=Index(fields=['lead_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Comment',
            index=Index(fields=['opportunity_id', 'id']),
        ),
        DropFieldIndex(
            model_name='Contact',
            name='deleted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        DropFieldIndex(
            model_name='Contact',
            name='email',
            field=fields.CharField(null=True, max_length=254),
        ),
        DropFieldIndex(
            model_name='Contact',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Contact',
            index=LiveIndex(fields=['organization_id', 'id'], name='contact_by_id_live'),
        ),
        ops.AddIndex(
            model_name='Contact',
            index=LiveIndex(fields=['organization_id', 'last_name', 'id'], name='contact_last_name_live'),
        ),
        ops.AddIndex(
            model_name='Contact',
            index=LiveIndex(fields=['organization_id', 'updated_at', 'id'], name='contact_updated_live'),
        ),
        ops.AddIndex(
            model_name='Contact',
            index=LiveIndex(fields=['organization_id', 'owner_id', 'id'], name='contact_owner_live'),
        ),
        ops.AddIndex(
            model_name='Contact',
            index=LiveIndex(fields=['organization_id', 'lifecycle_stage', 'id'], name='contact_lifecycle_live'),
        ),
        ops.AddIndex(
            model_name='Contact',
            index=LiveIndex(fields=['account_id', 'id'], name='contact_account_live'),
        ),
        DropFieldIndex(
            model_name='ContactTag',
            name='tag',
            field=fields.CharField(max_length=50),
        ),
        ops.AddIndex(
            model_name='Event',
            index=Index(fields=['organization_id', 'id']),
        ),
        DropFieldIndex(
            model_name='Lead',
            name='deleted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        DropFieldIndex(
            model_name='Lead',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Lead',
            index=LiveIndex(fields=['organization_id', 'id'], name='lead_by_id_live'),
        ),
        ops.AddIndex(
            model_name='Lead',
            index=LiveIndex(fields=['organization_id', 'title', 'id'], name='lead_title_live'),
        ),
        ops.AddIndex(
            model_name='Lead',
            index=LiveIndex(fields=['organization_id', 'updated_at', 'id'], name='lead_updated_live'),
        ),
        ops.AddIndex(
            model_name='Lead',
            index=LiveIndex(fields=['organization_id', 'visibility', 'owner_id', 'id'], name='lead_readers_live'),
        ),
        ops.AddIndex(
            model_name='Lead',
            index=LiveIndex(fields=['account_id', 'id'], name='lead_account_live'),
        ),
        ops.AddIndex(
            model_name='Lead',
            index=LiveIndex(fields=['contact_id', 'id'], name='lead_contact_live'),
        ),
        ops.AddIndex(
            model_name='Lead',
            index=LiveIndex(fields=['campaign_id', 'id'], name='lead_campaign_live'),
        ),
        ops.AddIndex(
            model_name='Lead',
            index=LiveIndex(fields=['converted_opportunity_id'], name='lead_converted_live'),
        ),
        DropFieldIndex(
            model_name='LeadFollower',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='LeadFollower',
            index=Index(fields=['user_id', 'record_id']),
        ),
        DropFieldIndex(
            model_name='LeadParticipant',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='LeadParticipant',
            index=Index(fields=['contact_id', 'record_id']),
        ),
        ops.AddIndex(
            model_name='LifecycleChange',
            index=Index(fields=['contact_id', 'id']),
        ),
        DropFieldIndex(
            model_name='LineItem',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='LineItem',
            index=Index(fields=['opportunity_id', 'id']),
        ),
        ops.AddIndex(
            model_name='LineItem',
            index=Index(fields=['product_id', 'opportunity_id']),
        ),
        DropFieldIndex(
            model_name='Message',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Message',
            index=Index(fields=['organization_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Message',
            index=Index(fields=['organization_id', 'updated_at', 'id']),
        ),
        ops.AddIndex(
            model_name='Message',
            index=Index(fields=['sender_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Message',
            index=Index(fields=['campaign_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Message',
            index=Index(fields=['status', 'updated_at']),
        ),
        ops.AddIndex(
            model_name='Notification',
            index=Index(fields=['user_id', 'id']),
        ),
        DropFieldIndex(
            model_name='Opportunity',
            name='amount_cents',
            field=fields.BigIntField(default=0),
        ),
        DropFieldIndex(
            model_name='Opportunity',
            name='deleted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        DropFieldIndex(
            model_name='Opportunity',
            name='expected_close_date',
            field=fields.DateField(),
        ),
        DropFieldIndex(
            model_name='Opportunity',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['organization_id', 'id'], name='opportunity_by_id_live'),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['organization_id', 'amount_cents', 'id'], name='opportunity_amount_live'),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['organization_id', 'name', 'id'], name='opportunity_name_live'),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['organization_id', 'expected_close_date', 'id'], name='opportunity_close_live'),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['organization_id', 'updated_at', 'id'], name='opportunity_updated_live'),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['organization_id', 'visibility', 'owner_id', 'id'], name='opportunity_readers_live'),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['organization_id', 'stage_id', 'id'], name='opportunity_stage_live'),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['account_id', 'id'], name='opportunity_account_live'),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['contact_id', 'id'], name='opportunity_contact_live'),
        ),
        ops.AddIndex(
            model_name='Opportunity',
            index=LiveIndex(fields=['campaign_id', 'id'], name='opportunity_campaign_live'),
        ),
        DropFieldIndex(
            model_name='OpportunityFollower',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='OpportunityFollower',
            index=Index(fields=['user_id', 'record_id']),
        ),
        DropFieldIndex(
            model_name='OpportunityParticipant',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='OpportunityParticipant',
            index=Index(fields=['contact_id', 'record_id']),
        ),
        DropFieldIndex(
            model_name='Organization',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        DropFieldIndex(
            model_name='PipelineStage',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='PipelineStage',
            index=Index(fields=['organization_id', 'position', 'id']),
        ),
        DropFieldIndex(
            model_name='Product',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Product',
            index=Index(fields=['organization_id', 'name', 'id']),
        ),
        ops.AddIndex(
            model_name='Product',
            index=Index(fields=['organization_id', 'updated_at', 'id']),
        ),
        DropFieldIndex(
            model_name='Quota',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Quota',
            index=Index(fields=['organization_id', 'period_start']),
        ),
        DropFieldIndex(
            model_name='Segment',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Segment',
            index=Index(fields=['organization_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Segment',
            index=Index(fields=['organization_id', 'updated_at', 'id']),
        ),
        ops.AlterModelOptions(
            name='SyncState',
            options={'table': 'sync_state', 'app': 'models', 'pk_attr': 'id', 'table_description': "One row: where the change log's per-organization commit order begins, and how far the"},
        ),
        ops.AddField(
            model_name='SyncState',
            name='ordered_from',
            field=fields.BigIntField(null=True),
        ),
        DropFieldIndex(
            model_name='User',
            name='updated_at',
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='User',
            index=Index(fields=['organization_id', 'id']),
        ),
        ops.AddIndex(
            model_name='User',
            index=Index(fields=['organization_id', 'full_name', 'id']),
        ),
        ops.AddIndex(
            model_name='User',
            index=Index(fields=['organization_id', 'email', 'id']),
        ),
        ops.AddIndex(
            model_name='User',
            index=Index(fields=['organization_id', 'updated_at', 'id']),
        ),
        ops.AddIndex(
            model_name='User',
            index=Index(fields=['manager_id', 'id']),
        ),
    ]
