from tortoise import migrations
from tortoise.migrations import operations as ops
from models.campaign import CampaignChannel, CampaignStatus, MemberStatus
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0009_products')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Segment',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(db_index=True, auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='segments', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('description', fields.TextField(null=True, unique=False)),
                ('conditions', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='segments', on_delete=OnDelete.RESTRICT)),
            ],
            options={'table': 'segment', 'app': 'models', 'unique_together': (('organization', 'name'),), 'pk_attr': 'id', 'table_description': "A named filter over the organization's contacts (and, through them, accounts)."},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='Campaign',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(db_index=True, auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='campaigns', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('channel', fields.CharEnumField(description='EMAIL: EMAIL\nEVENT: EVENT\nPHONE: PHONE\nADS: ADS\nOTHER: OTHER', enum_type=CampaignChannel, max_length=10)),
                ('status', fields.CharEnumField(default=CampaignStatus.PLANNED, description='PLANNED: PLANNED\nACTIVE: ACTIVE\nCOMPLETED: COMPLETED\nCANCELLED: CANCELLED', enum_type=CampaignStatus, max_length=10)),
                ('starts_on', fields.DateField(null=True)),
                ('ends_on', fields.DateField(null=True)),
                ('budget_cents', fields.BigIntField(null=True)),
                ('segment', fields.ForeignKeyField('models.Segment', source_field='segment_id', null=True, db_constraint=True, to_field='id', related_name='campaigns', on_delete=OnDelete.RESTRICT)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='campaigns', on_delete=OnDelete.RESTRICT)),
                ('subject_template', fields.CharField(null=True, max_length=300)),
                ('body_template', fields.TextField(null=True, unique=False)),
                ('launched_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'campaign', 'app': 'models', 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='CampaignCost',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(db_index=True, auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('campaign', fields.ForeignKeyField('models.Campaign', source_field='campaign_id', db_constraint=True, to_field='id', related_name='costs', on_delete=OnDelete.CASCADE)),
                ('description', fields.CharField(max_length=200)),
                ('amount_cents', fields.BigIntField()),
                ('incurred_on', fields.DateField()),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='campaign_costs', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'campaign_cost', 'app': 'models', 'pk_attr': 'id', 'table_description': "An actual cost of a campaign, in the organization's currency."},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='CampaignMember',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('campaign', fields.ForeignKeyField('models.Campaign', source_field='campaign_id', db_constraint=True, to_field='id', related_name='members', on_delete=OnDelete.CASCADE)),
                ('contact', fields.ForeignKeyField('models.Contact', source_field='contact_id', db_constraint=True, to_field='id', related_name='campaign_memberships', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=MemberStatus.PENDING, description='PENDING: PENDING\nMESSAGED: MESSAGED\nSKIPPED: SKIPPED\nINCLUDED: INCLUDED', enum_type=MemberStatus, max_length=10)),
                ('skip_reason', fields.CharField(null=True, max_length=30)),
                ('message', fields.ForeignKeyField('models.Message', source_field='message_id', null=True, db_constraint=True, to_field='id', related_name='campaign_members', on_delete=OnDelete.SET_NULL)),
                ('responded_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'campaign_member', 'app': 'models', 'unique_together': (('campaign', 'contact'),), 'pk_attr': 'id', 'table_description': "A contact in a launched campaign's snapshot of its segment."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Lead',
            name='campaign',
            field=fields.ForeignKeyField('models.Campaign', source_field='campaign_id', null=True, db_constraint=True, to_field='id', related_name='leads', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='Message',
            name='campaign',
            field=fields.ForeignKeyField('models.Campaign', source_field='campaign_id', null=True, db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='Opportunity',
            name='campaign',
            field=fields.ForeignKeyField('models.Campaign', source_field='campaign_id', null=True, db_constraint=True, to_field='id', related_name='opportunities', on_delete=OnDelete.SET_NULL),
        ),
    ]
