from tortoise import migrations
from tortoise.migrations import operations as ops
from models.event import EventKind
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Event',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('record_type', fields.CharField(max_length=20)),
                ('record_id', fields.IntField()),
                ('kind', fields.CharEnumField(description='CREATED: CREATED\nUPDATED: UPDATED\nSTAGE_CHANGED: STAGE_CHANGED\nWON: WON\nLOST: LOST\nCONVERTED: CONVERTED\nDELETED: DELETED\nPRIMARY_CONTACT_SET: PRIMARY_CONTACT_SET\nPARTICIPANT_ADDED: PARTICIPANT_ADDED\nPARTICIPANT_REMOVED: PARTICIPANT_REMOVED\nFOLLOWER_ADDED: FOLLOWER_ADDED\nFOLLOWER_REMOVED: FOLLOWER_REMOVED\nCOMMENT_ADDED: COMMENT_ADDED', enum_type=EventKind, max_length=30)),
                ('actor', fields.ForeignKeyField('models.User', source_field='actor_id', null=True, db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.SET_NULL)),
                ('changes', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'event', 'app': 'models', 'indexes': [Index(fields=['record_type', 'record_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Notification',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE)),
                ('event', fields.ForeignKeyField('models.Event', source_field='event_id', db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE)),
                ('read_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'notification', 'app': 'models', 'unique_together': (('user', 'event'),), 'indexes': [Index(fields=['user_id', 'read_at'])], 'pk_attr': 'id', 'table_description': "One per follower per event, except for the event's actor."},
            bases=['Model'],
        ),
    ]
