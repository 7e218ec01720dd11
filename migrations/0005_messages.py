from tortoise import migrations
from tortoise.migrations import operations as ops
from models.event import EventKind
from models.message import MessageStatus
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_activities')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Message',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(db_index=True, auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('sender', fields.ForeignKeyField('models.User', source_field='sender_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.RESTRICT)),
                ('lead', fields.ForeignKeyField('models.Lead', source_field='lead_id', null=True, db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.SET_NULL)),
                ('opportunity', fields.ForeignKeyField('models.Opportunity', source_field='opportunity_id', null=True, db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.SET_NULL)),
                ('to_contact', fields.ForeignKeyField('models.Contact', source_field='to_contact_id', db_constraint=True, to_field='id', related_name='messages_received', on_delete=OnDelete.RESTRICT)),
                ('to_email', fields.CharField(max_length=254)),
                ('cc', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('subject', fields.CharField(max_length=300)),
                ('body', fields.TextField(unique=False)),
                ('status', fields.CharEnumField(default=MessageStatus.OUTBOX, description='OUTBOX: OUTBOX\nSENT: SENT\nFAILED: FAILED', enum_type=MessageStatus, max_length=10)),
                ('attempts', fields.IntField(default=0)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('activity', fields.ForeignKeyField('models.Activity', source_field='activity_id', null=True, db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'message', 'app': 'models', 'indexes': [Index(fields=['organization_id', 'status'])], 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.AddField(
            model_name='Contact',
            name='do_not_contact',
            field=fields.BooleanField(default=False),
        ),
        ops.AlterField(
            model_name='Event',
            name='kind',
            field=fields.CharEnumField(description='CREATED: CREATED\nUPDATED: UPDATED\nSTAGE_CHANGED: STAGE_CHANGED\nWON: WON\nLOST: LOST\nCONVERTED: CONVERTED\nDELETED: DELETED\nPRIMARY_CONTACT_SET: PRIMARY_CONTACT_SET\nPARTICIPANT_ADDED: PARTICIPANT_ADDED\nPARTICIPANT_REMOVED: PARTICIPANT_REMOVED\nFOLLOWER_ADDED: FOLLOWER_ADDED\nFOLLOWER_REMOVED: FOLLOWER_REMOVED\nCOMMENT_ADDED: COMMENT_ADDED\nACTIVITY_PLANNED: ACTIVITY_PLANNED\nACTIVITY_RESCHEDULED: ACTIVITY_RESCHEDULED\nACTIVITY_COMPLETED: ACTIVITY_COMPLETED\nACTIVITY_CANCELLED: ACTIVITY_CANCELLED\nMESSAGE_SENT: MESSAGE_SENT', enum_type=EventKind, max_length=30),
        ),
    ]
