from tortoise import migrations
from tortoise.migrations import operations as ops
from models.activity import ActivityKind, ActivityStatus
from models.event import EventKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_lead_conversion')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Activity',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(db_index=True, auto_now=True, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='activities', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='VISIT: VISIT\nMEETING: MEETING\nCALL: CALL\nEMAIL: EMAIL\nTASK: TASK', enum_type=ActivityKind, max_length=10)),
                ('subject', fields.CharField(max_length=200)),
                ('notes', fields.TextField(null=True, unique=False)),
                ('starts_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('due_date', fields.DateField(null=True)),
                ('scheduled_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('duration_minutes', fields.IntField(null=True)),
                ('status', fields.CharEnumField(default=ActivityStatus.PLANNED, description='PLANNED: PLANNED\nDONE: DONE\nCANCELLED: CANCELLED', enum_type=ActivityStatus, max_length=10)),
                ('outcome', fields.TextField(null=True, unique=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='activities', on_delete=OnDelete.RESTRICT)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', null=True, db_constraint=True, to_field='id', related_name='activities', on_delete=OnDelete.SET_NULL)),
                ('contact', fields.ForeignKeyField('models.Contact', source_field='contact_id', null=True, db_constraint=True, to_field='id', related_name='activities', on_delete=OnDelete.SET_NULL)),
                ('lead', fields.ForeignKeyField('models.Lead', source_field='lead_id', null=True, db_constraint=True, to_field='id', related_name='activities', on_delete=OnDelete.SET_NULL)),
                ('opportunity', fields.ForeignKeyField('models.Opportunity', source_field='opportunity_id', null=True, db_constraint=True, to_field='id', related_name='activities', on_delete=OnDelete.SET_NULL)),
                ('version', fields.IntField(default=1)),
            ],
            options={'table': 'activity', 'app': 'models', 'indexes': [Index(fields=['organization_id', 'owner_id', 'scheduled_at'])], 'pk_attr': 'id', 'table_description': 'Linked to an account, a contact, a lead or an opportunity: at least one, at most one deal.'},
            bases=['SoftDeletedModel'],
        ),
        ops.CreateModel(
            name='ActivityAttendee',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('activity', fields.ForeignKeyField('models.Activity', source_field='activity_id', db_constraint=True, to_field='id', related_name='attendees', on_delete=OnDelete.CASCADE)),
                ('contact', fields.ForeignKeyField('models.Contact', source_field='contact_id', db_constraint=True, to_field='id', related_name='attended_activities', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'activity_attendee', 'app': 'models', 'unique_together': (('activity', 'contact'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AlterField(
            model_name='Event',
            name='kind',
            field=fields.CharEnumField(description='CREATED: CREATED\nUPDATED: UPDATED\nSTAGE_CHANGED: STAGE_CHANGED\nWON: WON\nLOST: LOST\nCONVERTED: CONVERTED\nDELETED: DELETED\nPRIMARY_CONTACT_SET: PRIMARY_CONTACT_SET\nPARTICIPANT_ADDED: PARTICIPANT_ADDED\nPARTICIPANT_REMOVED: PARTICIPANT_REMOVED\nFOLLOWER_ADDED: FOLLOWER_ADDED\nFOLLOWER_REMOVED: FOLLOWER_REMOVED\nCOMMENT_ADDED: COMMENT_ADDED\nACTIVITY_PLANNED: ACTIVITY_PLANNED\nACTIVITY_RESCHEDULED: ACTIVITY_RESCHEDULED\nACTIVITY_COMPLETED: ACTIVITY_COMPLETED\nACTIVITY_CANCELLED: ACTIVITY_CANCELLED', enum_type=EventKind, max_length=30),
        ),
    ]
